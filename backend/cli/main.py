"""palettenet: the command-line tool.

palettenet recolor IN -p "#hex,#hex,..."|PALETTE_FILE -o OUT [--method palettenet|chang2015]
palettenet recolor IN... FOLDER... -p PALETTE -o OUTDIR [--overwrite] [--jobs N]
palettenet palette IN [-k 6] [-o palette.gpl|palette.kpl] [--server URL]
palettenet info [--server URL]
palettenet serve [--bind tcp://127.0.0.1:5555 | --connect BROKER] [--device auto|cpu|cuda]
palettenet broker --frontend ADDRESS --backend ADDRESS [--curve-workers DIR ...]
palettenet keys DIR [--name NAME]
palettenet bench [--sizes 0.1,1,12,24] [--device auto|cpu|cuda]

recolor, palette and info run in this process by default, and through a daemon with
--server; both ways build the same palettenet/1 request and run the same engine, so the
pixels are identical.
"""

import argparse
import errno
import os
import signal
import sys
from pathlib import Path

import numpy as np

from backend import DEFAULT_WEIGHTS, __version__
from backend.service.protocol import DEFAULT_MAX_PIXELS, decode_reply, encode_request
from backend.service.security import (
    ClientKeys,
    SecurityError,
    ServerKeys,
    check_bind,
    create_keys,
    raise_fd_limit,
)
from backend.wire import DEFAULT_ADDRESS, MAX_PALETTE_COLORS


# --- talking to an engine, here or in a daemon ----------------------------------------------
def client_keys(args) -> ClientKeys | None:
    if args.curve_server_key is None:
        return None
    if args.curve_secret is None:
        raise SystemExit("--curve-server-key needs --curve-secret (this client's secret key)")
    return ClientKeys(args.curve_server_key, args.curve_secret)


def server_keys(args) -> ServerKeys | None:
    workers = getattr(args, "curve_workers", None)  # a broker's option only
    if args.curve_clients is None:
        if workers is not None:
            raise SystemExit("--curve-workers needs --curve-clients and --curve-secret")
        return None
    if args.curve_secret is None:
        raise SystemExit("--curve-clients needs --curve-secret (this server's secret key)")
    return ServerKeys(args.curve_secret, args.curve_clients, workers)


def call(args, header: dict, pixels=None, mask=None, load_model=True,
         reference=None) -> tuple[dict, list]:  # fmt: skip
    """One palettenet/1 request, through the daemon at args.server or in this process.
    reference: the reference image's pixels (header["reference"] describes them)."""
    if args.server:
        from backend.service.client import AddressError, Client

        try:
            with Client(args.server, args.timeout, client_keys(args)) as client:
                return client.request(header, pixels, mask, reference)
        except (TimeoutError, AddressError, SecurityError) as error:
            raise SystemExit(str(error)) from None
    from backend.service.engine import Engine

    engine = Engine(args.weights or DEFAULT_WEIGHTS, args.device, load_model=load_model)
    max_pixels = getattr(args, "max_pixels", DEFAULT_MAX_PIXELS)
    frames = encode_request(header, pixels, mask, reference)
    return decode_reply(engine.handle(frames, max_pixels))


def checked(reply: dict) -> dict:
    if not reply.get("ok"):
        error = reply.get("error", {})
        raise SystemExit(f"error ({error.get('code')}): {error.get('message')}")
    return reply


def read_picture(path: Path, max_pixels: int, reader=None):
    from backend.cli.imagefile import ImageFileError, read_image

    try:
        return (reader or read_image)(path, max_pixels)
    except ImageFileError as error:
        raise SystemExit(f"cannot read {path}: {error}") from None


def check_output(path: Path, picture=None):
    """The output's file type; SystemExit before any work if the result could not be
    written there or could not hold the picture (see imagefile.output_type)."""
    from backend.cli.imagefile import ImageFileError, output_type

    try:
        return output_type(path, picture)
    except ImageFileError as error:
        raise SystemExit(f"cannot write {path}: {error}") from None


def layer_header(op: str, path: Path, picture) -> dict:
    height, width = picture.pixels.shape[:2]
    return {"op": op, "id": path.name, "width": width, "height": height,
            "pixel_format": picture.pixel_format}  # fmt: skip


def read_mask(path: Path | None, picture, max_pixels: int) -> np.ndarray | None:
    if path is None:
        return None
    from backend.cli.imagefile import read_mask as read

    mask = read_picture(path, max_pixels, read)
    if mask.shape != picture.pixels.shape[:2]:
        height, width = picture.pixels.shape[:2]
        raise SystemExit(
            f"--mask {path} is {mask.shape[1]} x {mask.shape[0]}, the image {width} x {height}"
        )
    return mask


def palette_list(text: str) -> list[str]:
    return [entry.strip() for entry in text.split(",") if entry.strip()]


PALETTE_FILES = "GIMP .gpl, Krita .kpl, Adobe .ase/.aco, a hex list (.hex/.txt) or a strip image"


def palette_argument(text: str, option: str, max_pixels: int) -> list[str]:
    """-p or --source-palette: hex colours ("#e63946,1d3557"), or a palette file when the
    text names an existing file or looks like a path (backend/cli/palettefile.py)."""
    from backend.cli.palettefile import READ_FORMATS

    path = Path(text)
    image_types = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
    is_path = "/" in text or os.sep in text or path.suffix.lower() in (*READ_FORMATS, *image_types)
    if not (path.is_file() or is_path):
        return palette_list(text)
    colours, notes = read_palette_file(path, option, max_pixels)
    for note in notes:
        print(f"note: {path.name}: {note}", file=sys.stderr)
    if len(colours) > MAX_PALETTE_COLORS:
        raise SystemExit(
            f"{option} {path}: {len(colours)} colours; a palette takes 1 to "
            f"{MAX_PALETTE_COLORS}: keep the ones to use (in GIMP, Krita or a text editor)"
        )
    return list(colours)


def read_palette_file(path: Path, option: str, max_pixels: int) -> tuple[tuple, tuple]:
    """(colours, notes) of a palette file or a palette strip image; SystemExit saying
    which file, where in it and what is wrong."""
    from backend.cli import palettefile

    if path.exists() and not path.is_file():  # a folder; a FIFO would never end
        raise SystemExit(f"{option} {path}: not a regular file")
    try:
        with open(path, "rb") as file:
            head = file.read(16)
        if palettefile.palette_kind(head, path.name) == "image":
            from backend.cli.imagefile import to_8_bit

            limit = min(max_pixels, palettefile.MAX_STRIP_PIXELS)  # from the header
            try:
                pixels = to_8_bit(read_picture(path, limit).pixels)
            except SystemExit as error:
                raise SystemExit(f"{option} {error}".replace("(--max-pixels)",
                                 "(a palette strip's limit)")) from None  # fmt: skip
            height, width = pixels.shape[:2]
            if pixels.shape[2] == 3:
                pixels = np.dstack([pixels, np.full((height, width), 255, np.uint8)])
            found = palettefile.strip_palette(width, height, pixels.tobytes(), path.name)
        else:
            found = palettefile.read_palette(path)
    except OSError as error:
        raise SystemExit(f"{option} {path}: {error.strerror or error}") from None
    except palettefile.PaletteFileError as error:
        raise SystemExit(f"{option}: cannot read the palette file {error}") from None
    return found.colors, found.notes


# --- commands -------------------------------------------------------------------------------
def cmd_recolor(args):
    target = palette_argument(args.palette, "-p", args.max_pixels)
    source = None
    if args.source_palette:
        source = palette_argument(args.source_palette, "--source-palette", args.max_pixels)
    many = len(args.input) > 1 or args.input[0].is_dir()
    if args.save_reference is not None and not many:
        raise SystemExit("--save-reference needs several inputs (their reference image)")
    if many:  # many in one go: backend/cli/batch.py
        from backend.cli.batch import run_batch

        return run_batch(args, args.input, target, source)
    args.input = args.input[0]
    check_output(args.output)  # a result that cannot be written is not worth computing
    picture = read_picture(args.input, args.max_pixels)
    check_output(args.output, picture)
    header = layer_header("recolor", args.input, picture)
    header.update(method=args.method, palette=target)
    if source is not None:
        header["source_palette"] = source
    mask = read_mask(args.mask, picture, args.max_pixels)
    reference = None
    if args.reference is not None:
        from backend.cli.batch import pair_on_reference, reference_from_file

        reference = reference_from_file(args.reference, args.max_pixels)
        header["reference"] = reference_header(reference)
        if source is None:  # paired on the reference, as a batch given it pairs
            header["palette"], header["source_palette"] = pair_on_reference(target, reference)
    reply, frames = call(args, header, picture.pixels, mask, args.method == "palettenet", reference)
    checked(reply)
    write_result(args.output, picture, frames[0], args.png_compression == "small")
    print(f"wrote {args.output}")


def reference_header(reference: np.ndarray) -> dict:
    """header["reference"] for an RGBA8 reference image (H, W, 4)."""
    return {"width": reference.shape[1], "height": reference.shape[0], "pixel_format": "RGBA8"}


def write_result(path: Path, picture, frame, small_png: bool = False) -> None:
    """A recolor reply's pixel frame written as `path`, in the picture's profile (a PNG the
    smallest it can be with small_png, else written fast)."""
    from backend.cli.imagefile import ImageFileError, write_image

    out = np.frombuffer(frame, picture.pixels.dtype).reshape(picture.pixels.shape)
    try:
        write_image(path, picture, out, small=small_png)
    except (ImageFileError, OSError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise SystemExit(f"cannot write {path}: {reason}") from None


def cmd_palette(args):
    check_palette_output(args.output)
    if args.output is not None and args.output.exists() and args.output.samefile(args.input):
        raise SystemExit(f"cannot write {args.output}: it is the input image")
    picture = read_picture(args.input, args.max_pixels)
    header = layer_header("palette", args.input, picture)
    header["options"] = {"k": args.k}
    reply, _ = call(args, header, picture.pixels, load_model=False)
    checked(reply)
    for colour, share in zip(reply["palette"], reply["weights"]):
        print(f"{colour}  {share:6.1%}")
    if args.output is not None:
        from backend.cli.palettefile import PaletteFileError, write_palette

        labels = [f"{c} {share:.1%}" for c, share in zip(reply["palette"], reply["weights"])]
        try:
            write_palette(args.output, args.input.stem, reply["palette"], labels)
        except PaletteFileError as error:
            raise SystemExit(f"cannot write {error}") from None
        print(f"wrote {args.output}")


def check_palette_output(path: Path | None) -> None:
    """-o of `palette`: a .gpl or .kpl in an existing folder, checked before any work."""
    if path is None:
        return
    from backend.cli.palettefile import WRITE_FORMATS

    if path.suffix.lower() not in WRITE_FORMATS:
        raise SystemExit(f"cannot write {path}: palettes are written as "
                         f"{' or '.join(WRITE_FORMATS)}")  # fmt: skip
    if not path.parent.is_dir():
        raise SystemExit(f"cannot write {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise SystemExit(f"cannot write {path}: it is a folder")


def cmd_info(args):
    reply, _ = call(args, {"op": "info"})
    info = checked(reply)
    print(f"palettenet {info['version']} ({info['protocol']})")
    if args.server:
        print(f"server: {args.server}, {info['workers']} worker(s), limits {info['limits']}")
    print(f"device: {info['device']} ({info['precision']})")
    metadata = info["model_metadata"]
    if info["model"] == "none":
        print(f"model: none ({metadata['error']})")
    else:
        print(f"model: {metadata['file']} (architecture {metadata['arch_version']})")
        for key, value in metadata.get("training", {}).items():
            print(f"  {key}: {value}")
    print(f"methods: {', '.join(info['methods'])}")


def open_file_limit() -> str:
    """As many open files as the system allows this process (each connection is one); a
    note to print after the ready line when that is still few, since a flood of idle
    connections could then starve clients."""
    _, limit = raise_fd_limit()
    if limit < 4096:
        return f"note: at most {limit} open files (ulimit -n), so at most that many connections"
    return ""


def stop_on_signals(server) -> None:
    """SIGINT and SIGTERM ask the server to finish its work and stop; a second one of
    either ends the process at once."""

    def handler(signum, frame):
        print(f"{signal.Signals(signum).name}: finishing work in progress", flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        server.stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def address_problem(error) -> str:
    """What a zmq.ZMQError from binding means, in one line."""
    import zmq

    reason = zmq.strerror(error.errno)
    if error.errno == errno.EADDRINUSE:
        return f"{reason}: another program (a daemon already running?) listens there"
    if error.errno in (errno.EINVAL, errno.EPROTONOSUPPORT, errno.ENODEV):
        return f"{reason}; an address is tcp://HOST:PORT (e.g. {DEFAULT_ADDRESS}) or ipc://PATH"
    return reason


def probe_bind(address: str) -> None:
    """Bind a throwaway socket to `address` and close it again, so that a port in use or a
    malformed address fails at once, before the model loads."""
    import zmq

    from backend.service.security import bind, server_socket

    context = zmq.Context()
    try:
        socket = server_socket(context, zmq.ROUTER, address, 1, 0)
        try:
            bind(socket, address)
        finally:
            socket.close()
    except zmq.ZMQError as error:
        raise SystemExit(f"cannot serve on {address}: {address_problem(error)}") from None
    finally:
        context.term()


def cmd_serve(args):
    import zmq

    from backend.service.daemon import Daemon, Settings
    from backend.service.engine import Engine

    settings = Settings(
        bind=args.bind,
        connect=args.connect,
        max_pixels=args.max_pixels,
        workers=args.workers,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        server_keys=server_keys(args),
        client_keys=client_keys(args) if args.connect else None,
        heartbeat_s=args.heartbeat,
    )
    if args.connect is None:
        try:  # before the model loads: a refused address should fail at once
            check_bind(args.bind, settings.server_keys)
        except SecurityError as error:
            raise SystemExit(f"cannot serve: {error}") from None
        probe_bind(args.bind)
    engine = Engine(args.weights or DEFAULT_WEIGHTS, args.device)
    if args.max_batch is None:
        settings.max_batch = 4 if engine.device.type == "cuda" else 1
    daemon = Daemon(engine, settings)
    note = open_file_limit()
    try:
        endpoint = daemon.start()
    except zmq.ZMQError as error:  # not an OSError (pyzmq 27)
        where = args.connect or args.bind
        raise SystemExit(f"cannot serve on {where}: {address_problem(error)}") from None
    except (SecurityError, OSError) as error:
        raise SystemExit(f"cannot serve: {error}") from None
    stop_on_signals(daemon)
    model = engine.model_name
    if engine.model is None:
        model += f" ({engine.model_error}; serving chang2015 and palette only)"
    role = "worker of broker" if args.connect else "ready on"
    print(f"palettenet daemon {role} {endpoint} device={engine.device} model={model}", flush=True)
    if note:
        print(note, flush=True)
    daemon.serve()
    print("palettenet daemon stopped", flush=True)
    return 0


def cmd_broker(args):
    import zmq

    from backend.service.broker import Broker, BrokerSettings

    settings = BrokerSettings(
        frontend=args.frontend,
        backend=args.backend,
        max_pixels=args.max_pixels,
        worker_timeout_s=args.worker_timeout,
        queue_timeout_s=args.queue_timeout,
        max_queue=args.max_queue,
        server_keys=server_keys(args),
    )
    broker = Broker(settings)
    note = open_file_limit()
    try:
        frontend, backend = broker.start()
    except zmq.ZMQError as error:  # not an OSError (pyzmq 27)
        addresses = f"--frontend {args.frontend}, --backend {args.backend}"
        message = f"cannot start the broker ({addresses}): {address_problem(error)}"
        raise SystemExit(message) from None
    except (SecurityError, OSError) as error:
        raise SystemExit(f"cannot start the broker: {error}") from None
    stop_on_signals(broker)
    print(f"palettenet broker ready: clients {frontend}, workers {backend}", flush=True)
    if note:
        print(note, flush=True)
    broker.serve()
    print("palettenet broker stopped", flush=True)
    return 0


def cmd_keys(args):
    try:
        public, secret = create_keys(args.folder, args.name)
    except OSError as error:
        message = f"cannot create keys in {args.folder}: {error.strerror or error}"
        raise SystemExit(message) from None
    print(f"public key: {public}  (give it to the other side)")
    print(f"secret key: {secret}  (keep it private)")


def cmd_bench(args):
    from backend.cli.bench import run_bench

    return run_bench(args)


# --- arguments ------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """Usage errors in one line (the command's --help has the rest); exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


MAX_SECONDS = 10**6  # 11 days: a longer timeout is a typo (and overflows ZeroMQ's clock)


def positive(kind, maximum=MAX_SECONDS):
    """An argparse type: `kind` (int or float) above zero and at most `maximum` (which also
    refuses nan and inf)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value <= maximum:
            raise argparse.ArgumentTypeError(f"{text} must be above 0 and at most {maximum}")
        return value

    return parse


def add_engine_options(parser, server=True):
    parser.add_argument("--weights", type=Path, help="PaletteNet weight file")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    if server:
        parser.add_argument("--server", help="daemon address, e.g. tcp://127.0.0.1:5555")
        parser.add_argument(
            "--timeout", type=positive(float), default=600, help="seconds (--server)"
        )
        add_client_key_options(parser)


def add_client_key_options(parser):
    parser.add_argument("--curve-server-key", type=Path, help="the server's public .key file")
    parser.add_argument("--curve-secret", type=Path, help="this side's .key_secret file")


def add_limit_option(parser):
    parser.add_argument("--max-pixels", type=positive(int, 1 << 34), default=DEFAULT_MAX_PIXELS,
                        help="largest image accepted, in pixels")  # fmt: skip


def main(argv=None):
    parser = Parser(
        prog="palettenet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"palettenet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    recolor = commands.add_parser(
        "recolor",
        help="recolour images to a palette",
        description="Recolour an image, or many (files and folders) with one mapping: the "
        "same source -> target colour pairs for all of them (the source palette taken from "
        "all inputs together), results written under their own names in the -o folder.",
    )
    recolor.add_argument("input", type=Path, nargs="+", help="image files or folders")
    recolor.add_argument("-p", "--palette", required=True, metavar="COLOURS|FILE",
                         help='1-12 hex colours "#hex,#hex,..." or a palette file: '
                         f"{PALETTE_FILES}")  # fmt: skip
    recolor.add_argument("-o", "--output", type=Path, required=True,
                         help="output file; with several inputs or a folder, an existing "
                         "folder")  # fmt: skip
    recolor.add_argument("--method", choices=["palettenet", "chang2015"], default="palettenet")
    recolor.add_argument(
        "--source-palette",
        metavar="COLOURS|FILE",
        help="the colours the palette replaces, entry by entry, as -p takes them "
        "(default: the image's own, or all inputs' together, paired by lightness)",
    )
    recolor.add_argument("--png-compression", choices=["fast", "small"], default="fast",
                         help="PNG output: fast to write (default), or the smallest files "
                         "(a few %% smaller, many times slower)")  # fmt: skip
    recolor.add_argument("--overwrite", action="store_true",
                         help="several inputs: replace results that already exist")  # fmt: skip
    recolor.add_argument("--jobs", type=positive(int, 64),
                         help="several inputs: images recoloured at once (default: 1 in this "
                         "process, whose every step already uses all cores; 2 with --server, "
                         "reading and writing files while the daemon works)")  # fmt: skip
    recolor.add_argument("--mask", type=Path, help="grey image: white recolours, black keeps")
    recolor.add_argument("--reference", type=Path, metavar="IMAGE",
                         help="find the one colour mapping on this image (e.g. one saved with "
                         "--save-reference, or a sheet of the whole set) instead of on the "
                         "inputs: a re-run, or frames added later, match the first "
                         "run")  # fmt: skip
    recolor.add_argument("--save-reference", type=Path, metavar="FILE.png",
                         help="several inputs: save the reference image the mapping is found "
                         "on (a grid of all inputs), to give later runs as "
                         "--reference")  # fmt: skip
    add_engine_options(recolor)
    add_limit_option(recolor)
    recolor.set_defaults(run=cmd_recolor)

    palette = commands.add_parser("palette", help="print an image's palette")
    palette.add_argument("input", type=Path)
    palette.add_argument("-k", type=int, default=6, help="number of colours (1-12)")
    palette.add_argument(
        "-o", "--output", type=Path, help="also write the palette as a GIMP .gpl or Krita .kpl"
    )
    add_engine_options(palette)
    add_limit_option(palette)
    palette.set_defaults(run=cmd_palette)

    info = commands.add_parser("info", help="version, device and model")
    add_engine_options(info)
    info.set_defaults(run=cmd_info)

    serve = commands.add_parser("serve", help="run the backend daemon")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--bind", default=DEFAULT_ADDRESS, help="address to listen on")
    where.add_argument("--connect", help="serve as a worker of the broker at this address")
    add_engine_options(serve, server=False)
    serve.add_argument("--workers", type=positive(int), default=1, help="threads running the model")
    serve.add_argument(
        "--max-batch", type=positive(int), help="requests per network call (CUDA: 4)"
    )
    serve.add_argument(
        "--max-queue", type=positive(int), default=64, help="requests waiting, at most"
    )
    serve.add_argument("--heartbeat", type=positive(float), default=1.0, help="seconds (--connect)")
    add_limit_option(serve)
    add_client_key_options(serve)
    serve.add_argument("--curve-clients", type=Path, help="folder of accepted client .key files")
    serve.set_defaults(run=cmd_serve)

    broker = commands.add_parser("broker", help="one address in front of several daemons")
    broker.add_argument("--frontend", default=DEFAULT_ADDRESS, help="address for clients")
    broker.add_argument("--backend", default="tcp://127.0.0.1:5556", help="address for daemons")
    broker.add_argument(
        "--worker-timeout", type=positive(float), default=5.0, help="seconds of silence"
    )
    broker.add_argument(
        "--queue-timeout", type=positive(float), default=120.0, help="seconds waiting"
    )
    broker.add_argument(
        "--max-queue", type=positive(int), default=256, help="requests waiting, at most"
    )
    add_limit_option(broker)
    broker.add_argument("--curve-secret", type=Path, help="the broker's .key_secret file")
    broker.add_argument("--curve-clients", type=Path, help="folder of accepted client .key files")
    broker.add_argument(
        "--curve-workers", type=Path, help="folder of accepted daemon (worker) .key files"
    )
    broker.set_defaults(run=cmd_broker)

    keys = commands.add_parser("keys", help="create a CURVE key pair")
    keys.add_argument("folder", type=Path)
    keys.add_argument("--name", default="server", help="file name: NAME.key, NAME.key_secret")
    keys.set_defaults(run=cmd_keys)

    bench = commands.add_parser("bench", help="time recolouring in process and via a daemon")
    from backend.cli.bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(run=cmd_bench)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:  # Ctrl+C: stop quietly, with the shell's status for it
        raise SystemExit(130) from None
    except ValueError as error:  # library code raises; only the command line exits
        # (imported here: a DeviceError means the engine, and torch, are loaded already;
        # the broker and the client commands never load them)
        from backend.service.engine import DeviceError

        if isinstance(error, DeviceError):
            raise SystemExit(f"palettenet: {error}") from None
        raise


if __name__ == "__main__":
    sys.exit(main())
