"""Write a weight file for shipping: half precision, with evaluation notes in its record.

    python -m training export RUN/weights.pt backend/data/palettenet.pt [--note KEY=VALUE ...]

Half precision halves the file (7.7 M parameters: 31 MB -> 15.5 MB); the daemon loads it
back to float32 (or runs it in float16 on a GPU), so nothing else changes. --note adds
entries under "notes" in the record, e.g. the file's benchmark results.
"""

from pathlib import Path

from backend.core.weights import WeightsError, load_weights, read_metadata, save_weights
from training import TrainingError


def add_arguments(parser):
    parser.add_argument("weights", type=Path, help="a weight file from `training train`")
    parser.add_argument("out", type=Path, help="the file to write")
    parser.add_argument("--note", action="append", default=[], metavar="KEY=VALUE")


def run(args):
    try:
        model = load_weights(args.weights)
        training = read_metadata(args.weights).get("training", {})
    except WeightsError as error:
        raise TrainingError(str(error)) from None
    notes = dict(training.get("notes", {}))
    for note in args.note:
        key, sep, value = note.partition("=")
        if not sep:
            raise TrainingError(f"--note {note!r}: use KEY=VALUE")
        notes[key] = value
    save_weights(
        model, args.out, {**training, "notes": notes, "exported_from": str(args.weights)}, half=True
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, half precision)")
    return 0
