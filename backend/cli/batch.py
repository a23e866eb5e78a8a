"""`palettenet recolor` over many files or folders: one model load, one mapping, a progress
bar and a throughput summary.

- Inputs: files, and folders whose regular, non-hidden files are taken (not recursively,
  sorted by name). Results go to the folder -o names (it must exist), under the input's
  name; an input whose type is not written (GIF, QOI, ...) becomes a .png.
- One mapping for all: every image gets the same source -> target pairs. Without
  --source-palette the source palette is taken from ALL inputs together (an evenly strided
  sample of each input's pixels, each input counted alike, alpha-weighted as the daemon
  counts a layer) and paired with -p by lightness as the daemon pairs a single image
  (backend.core.palette.pair_with_image). With palettenet (or --save-reference) every
  input is also sent with one reference image (a grid of all inputs, small: see
  docs/PROTOCOL.md), on which the daemon finds one colour mapping for all; the pairs are
  then found on that grid instead of the samples, so a later run given it as --reference
  pairs alike. So a sprite sheet's frames or an icon set stay
  alike, with either method: one colour of the set gives one colour in every result. That
  takes a first pass over the inputs: the decoded images are kept for the second up to
  KEEP_BYTES, beyond it they are read again; the summary says how long the first pass
  took. (One input is left to the engine's own pairing and mapping: the same result as
  the single-image command, which keeps the source colours exact where the wire rounds
  them to 8-bit hex.)
- Before any work: the output folder, names that two inputs would share, an output that
  is an input, and existing outputs (refused unless --overwrite) are checked.
- A file that cannot be read, recoloured or written gets one line naming it and the
  reason; the others go on; the exit status is 1 if any failed. With --server, a daemon
  that answers neither a request nor a ping after it stops the run (the rest would each
  wait out the same timeout).
- Throughput: the next input is read and the previous result written while the current
  one is recoloured (image codecs and the engine release the GIL), and --jobs recolours
  several images at once. The summary prints images/s, MP/s and CPU time over wall time
  (this process's CPU; with --server also the daemon's, summed from its replies' cpu_ms).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.wire import MAX_REFERENCE_PIXELS

SAMPLE_PIXELS = 2_000_000  # pixels sampled over all inputs for the shared palette
REFERENCE_SIDE = 2048  # the reference grid's long side at most (4 MP: the protocol's limit)
KEEP_BYTES = 512 << 20  # decoded inputs kept from the first pass for the second, at most


class Kept:
    """Pictures decoded by the first pass, kept (up to a byte budget) so that the second
    does not decode them again. Thread-safe."""

    def __init__(self, budget: int = KEEP_BYTES):
        self.budget, self.pictures, self.lock = budget, {}, threading.Lock()

    def offer(self, path: Path, picture) -> None:
        with self.lock:
            if picture.pixels.nbytes <= self.budget:
                self.budget -= picture.pixels.nbytes
                self.pictures[path] = picture

    def take(self, path: Path):
        with self.lock:
            return self.pictures.pop(path, None)


class FileFailure(Exception):
    """One input failed; the message says which and why, in one line."""


class DaemonGone(FileFailure):
    """The daemon answered neither a request nor a ping after it: every other image would
    wait out the same timeout and fail alike, so the run stops."""


class NotAttempted(Exception):
    """An image not started because the run stopped (its daemon is gone)."""


@dataclass
class Job:
    source: Path
    output: Path


# --- the list of work ---------------------------------------------------------------------
def collect_inputs(paths: list[Path]) -> tuple[list[Path], dict]:
    """Files to recolour (folders expanded; a file named twice, as in `frames/*.png frames`,
    taken once), and {path: problem} for inputs not found."""
    files, problems = [], {}
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if not p.name.startswith("."))
            files += [p for p in inside if not p.is_dir()]
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            problems[path] = f"cannot read {path}: No such file or directory"
    named = {os.path.abspath(file): file for file in reversed(files)}  # the first naming
    return [file for file in files if named[os.path.abspath(file)] is file], problems


def plan_jobs(files: list[Path], folder: Path, overwrite: bool) -> list[Job]:
    """Where each result goes; SystemExit, before any work, for an output folder that is
    missing, names two inputs would share, an output that is an input, or existing outputs
    without --overwrite."""
    from backend.cli.imagefile import OUTPUT_TYPES

    if not folder.is_dir():
        if folder.exists() or folder.suffix.lower() in OUTPUT_TYPES:
            what = "is a file: name a folder"
        else:
            what = "does not exist (make it first)"
        raise SystemExit(f"with several inputs or a folder, -o is a folder: {folder} {what}")
    jobs, taken, existing = [], {}, []
    # realpath, not Path.resolve: a symlink loop among the inputs is that file's failure
    # (reported when it is read), not a traceback here
    inputs = {os.path.realpath(file) for file in files}
    for file in files:
        name = file.name if file.suffix.lower() in OUTPUT_TYPES else file.stem + ".png"
        output = folder / name
        if output.name in taken:
            raise SystemExit(f"{file} and {taken[output.name]} would both be written as "
                             f"{output}: rename one")  # fmt: skip
        if os.path.realpath(output) in inputs:
            raise SystemExit(f"{output} is an input: results would replace the originals; "
                             "write them to another folder")  # fmt: skip
        if output.exists():
            existing.append(output)
        taken[output.name] = file
        jobs.append(Job(file, output))
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise SystemExit(f"{existing[0]}{more} already exist: --overwrite replaces them")
    return jobs


# --- one engine or one daemon connection for the whole run --------------------------------
class Sender:
    """Requests to one Engine in this process (one model load) or to a daemon."""

    def __init__(self, args, load_model: bool):
        self.args = args
        self.engine = None
        if args.server:
            self._client().close()  # a malformed address fails here, before any work
        else:
            from backend import DEFAULT_WEIGHTS
            from backend.service.engine import Engine

            self.engine = Engine(args.weights or DEFAULT_WEIGHTS, args.device, load_model)

    def _client(self):
        from backend.cli.main import client_keys
        from backend.service.client import AddressError, Client

        try:
            return Client(self.args.server, self.args.timeout, client_keys(self.args))
        except AddressError as error:
            raise SystemExit(str(error)) from None

    def request(self, header: dict, pixels, reference=None) -> tuple[dict, list]:
        from backend.service.protocol import decode_reply, encode_request

        if self.engine is not None:
            frames = encode_request(header, pixels, None, reference)
            return decode_reply(self.engine.handle(frames, self.args.max_pixels))
        # A connection per request, as the single-image command makes. A reused Client
        # waits for its daemon's handshake afresh with every request and so took a reply
        # slower than 10 s (a busy daemon) for a daemon that could not be reached.
        with self._client() as client:
            try:
                return client.request(header, pixels, None, reference)
            except TimeoutError as error:
                failure = str(error)
        if not self.answers():
            raise DaemonGone(failure)
        raise FileFailure(failure)  # a slow reply from a daemon that is still there

    def answers(self) -> bool:
        """Whether the daemon answers a ping (it does while it works on long jobs)."""
        with self._client() as client:
            try:
                return bool(client.request({"op": "ping"})[0].get("ok"))
            except TimeoutError:
                return False


# --- the shared mapping -------------------------------------------------------------------
def read(path: Path, max_pixels: int):
    from backend.cli.main import read_picture

    try:
        return read_picture(path, max_pixels)
    except SystemExit as error:  # the single-image command's one-line message
        raise FileFailure(str(error)) from None


def sample(picture, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """An evenly strided sample of about `pixels` of a picture's pixels, counted as the
    daemon counts a layer's for its palette: (uint8 RGB (n, 3), weight (n,) = alpha in
    0..1). Pictures from imagefile are sRGB-encoded RGB8, RGBA8, RGBA16 or RGBAF32."""
    from backend.cli.imagefile import to_8_bit

    flat = picture.pixels.reshape(-1, picture.pixels.shape[2])
    flat = flat[:: max(1, -(-len(flat) // pixels))]
    rgb = np.ascontiguousarray(to_8_bit(flat[:, :3]))
    if flat.shape[1] < 4:
        return rgb, np.ones(len(rgb), np.float32)
    opaque = 1.0 if flat.dtype.kind == "f" else np.iinfo(flat.dtype).max
    return rgb, np.clip(flat[:, 3] / np.float32(opaque), 0, 1).astype(np.float32)


def tile(picture, side: int) -> np.ndarray:
    """A picture as RGBA8 of long side about `side`: every n-th pixel of every n-th row, or
    each pixel repeated n times (the nearest pixel keeps flat art's colours exact, as the
    editors' thumbnails do). Small pictures are enlarged so that each input covers about
    the same share of the reference: a 32-pixel sprite among photos must not count for
    next to nothing in the mapping."""
    from backend.cli.imagefile import to_8_bit

    pixels = picture.pixels
    longest = max(pixels.shape[:2])
    if longest < side:
        factor = side // longest
        pixels = np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)
    step = max(1, -(-max(pixels.shape[:2]) // side))
    thinned = pixels[::step, ::step]
    rgba = np.empty(thinned.shape[:2] + (4,), np.uint8)
    rgba[..., :3] = to_8_bit(thinned[..., :3])
    if pixels.shape[2] < 4:
        rgba[..., 3] = 255
    else:
        rgba[..., 3] = to_8_bit(thinned[..., 3:4])[..., 0]
    return rgba


def reference_from_file(path: Path, max_pixels: int) -> np.ndarray:
    """--reference IMAGE as the reference image: RGBA8, every n-th pixel of every n-th row
    where it is larger than the protocol's limit and max_pixels allow. SystemExit, in one
    line, for a file that cannot be read."""
    from backend.cli.main import read_picture

    picture = read_picture(path, max_pixels)
    height, width = picture.pixels.shape[:2]
    limit = min(MAX_REFERENCE_PIXELS, max_pixels)
    step = 1
    while -(-height // step) * -(-width // step) > limit:
        step += 1
    return np.ascontiguousarray(tile(picture, -(-max(height, width) // step)))


def grid(tiles: list[np.ndarray]) -> np.ndarray:
    """RGBA8 tiles in a square grid, each at the top-left of its cell, the rest transparent."""
    columns = int(np.ceil(np.sqrt(len(tiles))))
    rows = -(-len(tiles) // columns)
    cell_height = max(t.shape[0] for t in tiles)
    cell_width = max(t.shape[1] for t in tiles)
    out = np.zeros((rows * cell_height, columns * cell_width, 4), np.uint8)
    for index, part in enumerate(tiles):
        top, left = (index // columns) * cell_height, (index % columns) * cell_width
        out[top : top + part.shape[0], left : left + part.shape[1]] = part
    return out


def shared_mapping(jobs: list[Job], target: list[str], args, failed: dict, kept: Kept,
                   source: list[str] | None = None, reference: bool = False):  # fmt: skip
    """(target, source, reference): `target` paired with the palette of all inputs
    together (hex lists, entry by entry; as given where `source` is given), and where
    `reference` is asked for, a grid of all inputs (RGBA8, at most REFERENCE_SIDE long)
    to send with each as the reference image (else None); the pairs are then found on that
    grid (pair_on_reference), so that a later run given it as --reference pairs alike.
    Inputs that cannot be read are put in `failed` (and reported); those read are offered
    to `kept`."""
    from tqdm import tqdm

    per_image = max(1, SAMPLE_PIXELS // max(1, len(jobs)))
    # the grid within the protocol's reference limit and this run's --max-pixels
    longest = min(REFERENCE_SIDE, int(np.sqrt(min(MAX_REFERENCE_PIXELS, args.max_pixels))))
    side = max(1, min(512, longest // int(np.ceil(np.sqrt(len(jobs))))))
    samples, tiles = [], []

    def sampled(job: Job):
        picture = read(job.source, args.max_pixels)
        kept.offer(job.source, picture)
        return (
            sample(picture, per_image) if source is None and not reference else None,
            tile(picture, side) if reference else None,
        )

    bar = tqdm(total=len(jobs), desc="palette", unit="image", file=sys.stderr, disable=None)
    with bar, ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(sampled, job) for job in jobs]
        with cancelled_on_interrupt(futures):
            if source is None:  # loaded while the inputs are read (it loads torch: seconds)
                import backend.core.palette  # noqa: F401

            for job, future in zip(jobs, futures):
                try:
                    picture_sample, picture_tile = future.result()
                    samples.append(picture_sample)
                    tiles.append(picture_tile)
                except FileFailure as error:
                    failed[job.source] = str(error)
                    bar.write(str(error), file=sys.stderr)
                bar.update()
    if not tiles:
        return target, source, None
    if not reference:
        if source is not None:
            return target, source, None
        rgb = np.concatenate([s[0] for s in samples])[None]
        weight = np.concatenate([s[1] for s in samples])[None]
        return (*paired(target, rgb, weight, "the inputs"), None)
    shared_reference = grid(tiles)
    if source is not None:
        return target, source, shared_reference
    return (*pair_on_reference(target, shared_reference), shared_reference)


def pair_on_reference(target: list[str], reference: np.ndarray) -> tuple[list, list]:
    """(target, source) hex lists, entry by entry: `target` paired with the palette of a
    reference image (RGBA8, its pixels counted by alpha)."""
    rgb = np.ascontiguousarray(reference[..., :3]).reshape(1, -1, 3)
    weight = (reference[..., 3].reshape(1, -1) / np.float32(255)).astype(np.float32)
    return paired(target, rgb, weight, "the reference image")


def paired(target: list[str], rgb: np.ndarray, weight: np.ndarray, what: str):
    """(target, source) hex lists: `target` paired by lightness with the palette of the
    uint8 RGB pixels (1, n, 3), counted by weight (1, n), as the daemon pairs one image
    (backend.core.palette.pair_with_image); the targets as the user wrote them."""
    from backend.core.color import lab_to_rgb_np, rgb_to_lab_np
    from backend.core.palette import PaletteError, pair_with_image, to_hex
    from backend.service.protocol import ProtocolError, parse_palette

    try:
        target_lab = rgb_to_lab_np(parse_palette(target))
    except ProtocolError as error:
        raise SystemExit(f"error ({error.code}): {error.message}") from None
    try:
        chosen_lab, source = pair_with_image(target_lab, rgb, weight)
    except PaletteError as error:
        raise SystemExit(f"cannot take a palette from {what}: {error}") from None
    # the targets as the user wrote them (no round trip through LAB)
    chosen = [int(np.argmin(((target_lab - row) ** 2).sum(1))) for row in chosen_lab]
    return [target[i] for i in chosen], [to_hex(colour) for colour in lab_to_rgb_np(source)]


def save_reference(path: Path, reference: np.ndarray) -> None:
    """Write the reference grid as a PNG for a later --reference; SystemExit if it cannot."""
    from PIL import Image

    try:
        Image.fromarray(reference, "RGBA").save(path, format="PNG")
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot write the reference image {path}: {error}") from None
    print(f"reference image saved as {path} (give it as --reference to match this run)",
          file=sys.stderr)  # fmt: skip


# --- the run ------------------------------------------------------------------------------
def refuse_what_every_image_would_get(header: dict) -> None:
    """SystemExit, before any image is sent, for a request the engine would refuse for every
    one (--source-palette and -p of different lengths, a colour that is not one): the
    protocol's own checks on a 1 x 1 layer, so one line instead of one per image."""
    from backend.service.protocol import ProtocolError, encode_request, parse_request

    probe = dict(header, id="check", width=1, height=1, pixel_format="RGBA8")
    try:
        parse_request(encode_request(probe, np.zeros(4, np.uint8)), max_pixels=1)
    except ProtocolError as error:
        raise SystemExit(f"error ({error.code}): {error.message}") from None


@contextmanager
def cancelled_on_interrupt(futures):
    """On Ctrl+C (or any error) while waiting for `futures`, cancel those not started: the
    pool's exit then waits only for the images in hand, each written whole or not at all.
    (Without it the pool ran every queued image before the interrupt took effect.)"""
    try:
        yield
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def recolor_one(job: Job, header: dict, sender: Sender, args, kept: Kept,
                reference=None) -> tuple[int, float]:  # fmt: skip
    """Read, recolour, write one input, as the single-image command does: (its pixel count,
    the engine's CPU seconds for it as the reply says). FileFailure, naming the file and the
    reason, if any step fails."""
    from backend.cli.main import check_output, layer_header, write_result

    picture = kept.take(job.source) or read(job.source, args.max_pixels)
    try:
        check_output(job.output, picture)
        request = dict(layer_header("recolor", job.source, picture), **header)
        reply, frames = sender.request(request, picture.pixels, reference)
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise SystemExit(f"{job.source}: error ({error.get('code')}): {error.get('message')}")
        write_result(job.output, picture, frames[0], args.png_compression == "small")
    except SystemExit as error:
        raise FileFailure(str(error)) from None
    engine_cpu = reply.get("cpu_ms", {}).get("total", 0.0) / 1000
    return picture.pixels.shape[0] * picture.pixels.shape[1], engine_cpu


def run_batch(args, paths: list[Path], target: list[str], source: list[str] | None) -> int:
    from tqdm import tqdm

    if args.mask is not None:
        raise SystemExit("--mask needs a single input (a mask fits one image)")
    if args.jobs is None:  # in process two at once cost 40 % more CPU for 13 % less (qa16)
        args.jobs = 2 if args.server else 1
    files, problems = collect_inputs(paths)
    jobs = plan_jobs(files, args.output, args.overwrite)
    if not jobs and not problems:
        raise SystemExit("no files to recolour")
    given = {"op": "recolor", "method": args.method, "palette": target}
    refuse_what_every_image_would_get(given if source is None else
                                      dict(given, source_palette=source))  # fmt: skip
    failed = dict(problems)
    for problem in problems.values():
        print(problem, file=sys.stderr)
    loading = time.perf_counter()
    sender = Sender(args, load_model=args.method == "palettenet")
    load_s = time.perf_counter() - loading
    started, cpu_started = time.perf_counter(), time.process_time()
    mapping_s, kept, reference = 0.0, Kept(), None
    with_reference = args.method == "palettenet"  # chang2015 maps by the pairs alone
    if args.reference is not None:  # the user's: paired on it and mapped by it
        reference = reference_from_file(args.reference, args.max_pixels)
        if source is None:
            target, source = pair_on_reference(target, reference)
    elif args.save_reference is not None or (
        len(jobs) > 1 and (source is None or with_reference)
    ):  # one image: as the engine does
        began = time.perf_counter()
        given = source
        target, source, reference = shared_mapping(
            jobs, target, args, failed, kept, source,
            with_reference or args.save_reference is not None,
        )  # fmt: skip
        if args.save_reference is not None and reference is not None:
            save_reference(args.save_reference, reference)
        mapping_s = time.perf_counter() - began
        if source is not None and given is None:
            pairs = ", ".join(f"{s} -> {t}" for s, t in zip(source, target))
            read = sum(job.source not in failed for job in jobs)
            print(f"one mapping for all {read} inputs: {pairs}", file=sys.stderr)
    header = {"op": "recolor", "method": args.method, "palette": target}
    if source is not None:
        header["source_palette"] = source
    if reference is not None:
        from backend.cli.main import reference_header

        header["reference"] = reference_header(reference)
    todo = [job for job in jobs if job.source not in failed]
    pixels, done, engine_cpu, skipped = 0, 0, 0.0, 0
    gone = threading.Event()  # set by the first DaemonGone: workers start no more images

    def attempt(job: Job):
        if gone.is_set():
            raise NotAttempted
        try:
            return recolor_one(job, header, sender, args, kept, reference)
        except DaemonGone:
            gone.set()  # here, in the worker: it takes the next image at once
            raise

    bar = tqdm(total=len(todo), desc="recolour", unit="image", file=sys.stderr, disable=None)
    with bar, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(attempt, job) for job in todo]
        with cancelled_on_interrupt(futures):
            for job, future in zip(todo, futures):
                try:
                    count, seconds = future.result()
                    pixels, engine_cpu = pixels + count, engine_cpu + seconds
                    done += 1
                except NotAttempted:
                    failed[job.source], skipped = "not attempted", skipped + 1
                except FileFailure as error:
                    failed[job.source] = str(error)
                    bar.write(str(error), file=sys.stderr)
                bar.update()
    if gone.is_set():
        print(f"stopped: the daemon at {args.server} answers no more (not even a ping); "
              f"{skipped} images not attempted", file=sys.stderr)  # fmt: skip
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if args.server:
        where = (f"through {args.server}: this client's CPU only; the daemon's replies "
                 f"count {engine_cpu:.1f} s CPU")  # fmt: skip
    else:
        where = f"in process, after {load_s:.1f} s loading the engine once"
    first = f", of which {mapping_s:.1f} s finding the shared mapping" if mapping_s else ""
    print(f"recoloured {done} of {done + len(failed)} images ({pixels / 1e6:.1f} MP) in "
          f"{wall:.1f} s{first}: {done / wall:.2f} images/s, {pixels / 1e6 / wall:.2f} MP/s; "
          f"CPU {cpu:.1f} s / wall {wall:.1f} s = {cpu / wall:.2f} of {os.cpu_count()} cores "
          f"({where}, --jobs {args.jobs})")  # fmt: skip
    if failed:
        print(f"{len(failed)} failed: {', '.join(str(p) for p in failed)}", file=sys.stderr)
        return 1
    return 0
