"""python -m training {prepare,split,train,evaluate,export,figures} ... (see each module's
docstring).

The commands raise TrainingError for a bad argument or file; this is the one place that turns
it into `training: <message>` on stderr and exit status 2.
"""

import argparse
import importlib
import sys

from training import TrainingError

COMMANDS = {
    "prepare": ("training.prepare", "build a training dataset from a folder of photos"),
    "split": ("training.artwork_data", "split artwork / photos by source package (B4 data)"),
    "train": ("training.train", "train PaletteNet (phase 1: Euclidean, phase 2: adversarial)"),
    "evaluate": ("training.evaluate", "quality benchmark of recolouring methods"),
    "export": ("training.export", "write a weight file for shipping (half precision)"),
    "figures": ("training.figures", "pictures and numbers for the model card"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(
            name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        if argv and argv[0] == name:  # import only what runs: torch start-up is slow
            module = importlib.import_module(module_name)
            sub.description = module.__doc__
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except TrainingError as error:
        print(f"training: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
