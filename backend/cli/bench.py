"""palettenet bench: what a recolour costs at several sizes, in process and via a daemon.

For each size (megapixels) a photo (scikit-image's astronaut, resized to 3:2) is sent as
RGBA8 and recoloured with palettenet and with chang2015, in this process (the Engine, as the
CLI runs it) and through a daemon on loopback (a `palettenet serve` subprocess, asked by
backend.service.client as `--server` does: layers of 1 MiB or more through shared memory
files, docs/PROTOCOL.md; the plug-ins send frames). Printed per size and method:

    seconds per recolour in process (in a worker thread, like the daemon's) and through
    the daemon (best of --repeat),
    the daemon's overhead (daemon time / in-process time),
    the network's share (palettenet: the network call alone at the working size),
    peak memory: how far resident memory rose above its level before the recolour, for
    this process (in process) and for the daemon process (Linux only: /proc/PID/status
    VmHWM after resetting it through /proc/PID/clear_refs).

Without --weights (and no installed default model) a randomly initialised model is used:
the time does not depend on the weights' values.

--quality PHOTO... measures instead how close the working-size path (backend.core.fullres) comes
to running the network on every pixel: mean delta E76 against the network run at full size,
over all pixels and over the 5 % with the strongest lightness edges, for the path the
daemon uses and, for comparison, for plain bilinear upsampling of the network's change.
--crop FILE saves a side-by-side crop (source | full size | daemon | bilinear) where the two
differ most. Give real weights for this: a random model's output says little.
"""

import argparse
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PALETTE = ["#0b1d51", "#725ac1", "#8d86c9", "#cac4ce", "#f7ece1", "#e0b1cb"]
METHODS = ("palettenet", "chang2015")
READY = re.compile(r"ready on (\S+)")


MAX_MEGAPIXELS = 134  # the daemon's default pixel limit


def checked(kind, check, what: str):
    """An argparse type: `kind` (int, float, str) passing `check`."""

    def parse(text: str):
        try:
            value = kind(text.strip())
        except ValueError:
            value = None
        if value is None or not check(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what}")
        return value

    return parse


def listed(item):
    """An argparse type: a comma-separated list, each entry parsed by `item`."""

    def parse(text: str) -> list:
        entries = [entry for entry in text.split(",") if entry.strip()]
        if not entries:
            raise argparse.ArgumentTypeError("an empty list")
        return [item(entry) for entry in entries]

    return parse


def add_arguments(parser) -> None:
    megapixels = checked(float, lambda v: 0 < v <= MAX_MEGAPIXELS,
                         f"megapixels above 0 and at most {MAX_MEGAPIXELS}")  # fmt: skip
    parser.add_argument("--sizes", default="0.1,1,12,24", type=listed(megapixels),
                        help="megapixels, comma-separated (default 0.1,1,12,24)")  # fmt: skip
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--weights", type=Path, help="PaletteNet weights (default: random)")
    parser.add_argument(
        "--repeat",
        default=1,
        help="runs per case; the best counts",
        type=checked(int, lambda v: 1 <= v <= 100, "a count from 1 to 100"),
    )
    method = checked(str, lambda v: v in METHODS, " or ".join(METHODS))
    parser.add_argument("--methods", default=",".join(METHODS), type=listed(method),
                        help="palettenet,chang2015")  # fmt: skip
    parser.add_argument(
        "--quality", nargs="+", type=Path, metavar="PHOTO", help="compare with full-size network"
    )
    parser.add_argument("--crop", type=Path, help="with --quality: save a comparison crop here")
    parser.add_argument("--precision", choices=["auto", "float32", "float16"], default="auto",
                        help="of the network in process (float16: CUDA only)")  # fmt: skip
    count = checked(int, lambda v: 1 <= v <= 64, "a count from 1 to 64")
    parser.add_argument("--max-batch", type=count, help="the daemon's requests per network call")
    parser.add_argument("--concurrent", type=count, default=1,
                        help="also send this many requests at once to the daemon")  # fmt: skip
    parser.add_argument("--preview", action="store_true",
                        help="the live preview's latency: 30 palette changes")  # fmt: skip
    side = checked(int, lambda v: 16 <= v <= 4096, "16 to 4096")
    parser.add_argument("--preview-side", type=side, default=512,
                        help="with --preview: the preview's long side (512)")  # fmt: skip


# --- memory -------------------------------------------------------------------------------
def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """How far a process's resident memory rises during a `with` block, in MB (None where
    /proc cannot tell)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.rise_mb = None

    def __enter__(self):
        try:  # "5" resets the peak (VmHWM) to the current resident size
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            pass
        self.before = _status_kb(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc):
        peak = _status_kb(self.pid, "VmHWM")
        if peak is not None and self.before is not None:
            self.rise_mb = max(0, peak - self.before) / 1024


# --- cases --------------------------------------------------------------------------------
def photo(megapixels: float) -> np.ndarray:
    """RGBA8 (H, W, 4) of about `megapixels`, 3:2."""
    from PIL import Image
    from skimage import data

    width = round((megapixels * 1e6 * 1.5) ** 0.5)
    height = round(width / 1.5)
    image = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image.convert("RGBA"))


def header(method: str, pixels: np.ndarray) -> dict:
    height, width = pixels.shape[:2]
    return {"op": "recolor", "id": "bench", "width": width, "height": height,
            "pixel_format": "RGBA8", "palette": PALETTE, "method": method}  # fmt: skip


def best_of(repeat: int, run) -> tuple[float, dict, float | None]:
    """(best seconds, reply header of the best run, peak memory rise of the first run)."""
    best, best_reply, memory = None, None, None
    for attempt in range(repeat):
        start = time.perf_counter()
        reply, meter = run()
        seconds = time.perf_counter() - start
        if not reply.get("ok"):
            raise SystemExit(f"bench: {reply.get('error')}")
        if attempt == 0:
            memory = meter.rise_mb
        if best is None or seconds < best:
            best, best_reply = seconds, reply
    return best, best_reply, memory


class DaemonProcess:
    """`palettenet serve` in a subprocess on a free loopback port, stopped with SIGTERM."""

    def __init__(self, weights: Path, device: str, max_batch: int | None = None):
        command = [sys.executable, "-m", "backend.cli.main", "serve", "--bind", "tcp://127.0.0.1:*",
                   "--weights", str(weights), "--device", device]  # fmt: skip
        if max_batch is not None:
            command += ["--max-batch", str(max_batch), "--workers", "1"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        for line in self.process.stdout:
            match = READY.search(line)
            if match:
                self.address = match.group(1)
                return
        raise SystemExit("bench: the daemon did not start")

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def weights_for(args, folder: str) -> tuple[Path, str]:
    """--weights, else the installed model, else a random one saved in `folder`; and a note
    saying which when it is not the user's."""
    from backend import DEFAULT_WEIGHTS

    if args.weights is not None:
        return args.weights, ""
    if DEFAULT_WEIGHTS.exists():
        return DEFAULT_WEIGHTS, " (the installed default model)"
    import torch

    from backend.core.model import PaletteNet
    from backend.core.weights import save_weights

    torch.manual_seed(0)
    weights = Path(folder) / "random.pt"
    save_weights(PaletteNet(), weights)
    return weights, " (randomly initialised weights)"


def in_a_thread(function):
    """function() run in a new thread, as the daemon's workers run the engine.

    Like for like: on a machine whose cores are busy with other work, PyTorch's parallel
    regions started from the main thread were measured about 3 times slower than the same
    call from a worker thread (they wait for a thread the machine has given to someone
    else); timing both in worker threads leaves only the daemon's own overhead in the ratio."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


def run_bench(args) -> int:
    if args.quality:
        return run_quality(args)
    if args.preview:
        return run_preview(args)
    from backend.service.client import Client
    from backend.service.engine import Engine
    from backend.service.protocol import DEFAULT_MAX_PIXELS, decode_reply, encode_request

    sizes, methods = args.sizes, args.methods
    with tempfile.TemporaryDirectory() as folder:
        weights, note = weights_for(args, folder)
        engine = Engine(weights, args.device, precision=args.precision)
        daemon = DaemonProcess(weights, args.device, args.max_batch)
        client = Client(daemon.address, timeout_s=3600)
        print(f"device {engine.device}, {engine.info()['precision']}, weights {weights}{note}")
        print(f"daemon: {client.request({'op': 'info'})[0].get('precision')}, max batch "
              f"{args.max_batch or 'default'}")  # fmt: skip
        print(f"daemon {daemon.address}; {os.cpu_count()} CPUs; best of {args.repeat}; "
              f"load average at start {_load()}\n")  # fmt: skip

        shifts = itertools.count(1)

        def unseen(pixels):
            """The photo shifted by a new number of columns: the engine's palette cache
            (a layer analysed once) never helps, so each run pays for a new layer."""
            return np.roll(pixels, next(shifts), axis=1)

        def in_process(method, pixels):
            def run():
                fresh = unseen(pixels)
                frames = encode_request(header(method, fresh), fresh)
                with PeakMemory(os.getpid()) as meter:
                    reply = in_a_thread(lambda: engine.handle(frames, DEFAULT_MAX_PIXELS))
                return decode_reply(reply)[0], meter

            return run

        def via_daemon(method, pixels):
            def run():
                fresh = unseen(pixels)
                with PeakMemory(daemon.process.pid) as meter:
                    reply, _ = client.request(header(method, fresh), fresh)
                return reply, meter

            return run

        rows, steps, files, throughput = [], [], [], []
        try:
            warm = photo(0.05)
            for method in methods:  # first calls pay for lazy initialisation
                in_process(method, warm)()
                via_daemon(method, warm)()
            for megapixels in sizes:
                pixels = photo(megapixels)
                network = None  # palettenet's network call at this size, this run
                model_mb = network_rise_mb(engine, pixels)
                for method in methods:
                    local, reply, local_mb = best_of(args.repeat, in_process(method, pixels))
                    remote, _, remote_mb = best_of(args.repeat, via_daemon(method, pixels))
                    if "network" in reply["timing_ms"]:
                        network = reply["timing_ms"]["network"] / 1000
                    beyond = local_mb
                    if method == "palettenet" and None not in (local_mb, model_mb):
                        beyond = max(0.0, local_mb - model_mb)  # memory reused: noise
                    rows.append((pixels, method, local, remote, network, local_mb, beyond,
                                 remote_mb))  # fmt: skip
                    steps.append((pixels, method, reply))
                    if args.concurrent > 1:
                        seconds = at_once(daemon.address, args.concurrent, method, unseen(pixels))
                        throughput.append((pixels, method, args.concurrent, seconds))
                files.append((pixels, network, time_files(pixels, folder, args.repeat)))
            cli = time_cli_start(daemon.address)
        finally:
            client.close()
            daemon.close()
    print_tables(rows, steps, files, cli)
    if throughput:
        print("\n| MP | method | requests at once | seconds for all | images/s | MP/s |")
        print("|---:|---|---:|---:|---:|---:|")
        for pixels, method, count, seconds in throughput:
            megapixels = pixels.shape[0] * pixels.shape[1] / 1e6
            cells = [_megapixels(pixels), method, str(count), f"{seconds:.2f}",
                     f"{count / seconds:.2f}", f"{count * megapixels / seconds:.1f}"]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
        print("\nThat many clients, each with its own connection, sending one request each at")
        print("the same moment to the daemon (batched up to its --max-batch per network call).")
    print(f"\nload average at end {_load()} (other work on this machine slows every number)")
    return 0


def run_preview(args) -> int:
    """bench --preview: the live preview's latency through a daemon (preview_bench)."""
    from backend.cli.preview_bench import THUMBNAIL_SIDE, run_preview_bench

    with tempfile.TemporaryDirectory() as folder:
        weights, note = weights_for(args, folder)
        daemon = DaemonProcess(weights, args.device, args.max_batch)
        print(f"weights {weights}{note}; {os.cpu_count()} CPUs; load average {_load()}")
        try:
            pixels = photo(THUMBNAIL_SIDE * THUMBNAIL_SIDE / 1.5 / 1e6)
            run_preview_bench(args, daemon.address, pixels)
        finally:
            daemon.close()
    print(f"load average at end {_load()} (other work on this machine slows every number)")
    return 0


def _load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def _megapixels(pixels) -> str:
    return f"{pixels.shape[0] * pixels.shape[1] / 1e6:.1f}"


def _ratio(value, reference) -> str:
    return "" if value is None or not reference else f"{value / reference:.2f}"


def print_tables(rows, steps, files, cli) -> None:
    print("| MP | method | in process s | via daemon s | daemon / in process | in process "
          "/ network | peak MB in process | beyond model / layer | peak MB daemon |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for pixels, method, local, remote, network, local_mb, beyond_mb, remote_mb in rows:
        layer_mb = pixels.nbytes / 2**20
        cells = [_megapixels(pixels), method, f"{local:.2f}", f"{remote:.2f}",
                 f"{remote / local:.2f}", _ratio(local, network), _mb(local_mb),
                 _ratio(beyond_mb, layer_mb), _mb(remote_mb)]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print("\nin process / network: the whole recolour in process over palettenet's network call at")
    print("the working size (same size, this run). peak MB: how far resident memory rose above")
    print("its level before the request (first run). beyond model / layer: that peak less")
    print("the network call's own (measured alone at the same working size), over the layer's")
    print("bytes. Targets (issue 16): palettenet <= 2.0, chang2015 <= 1.0, daemon / in process")
    print("<= 1.1, beyond model / layer <= 2.5.")

    print("\n| MP | method | step | s | CPU s | CPU / wall |")
    print("|---:|---|---|---:|---:|---:|")
    for pixels, method, reply in steps:
        wall, cpu = reply["timing_ms"], reply.get("cpu_ms", {})
        timed = [(step, ms, cpu.get(step)) for step, ms in wall.items() if step != "total"]
        if "network" in wall:  # what the network's ratio leaves to everything else
            others = [(ms, cpu_ms) for step, ms, cpu_ms in timed if step != "network"]
            cpu_sum = None if None in [c for _, c in others] else sum(c for _, c in others)
            timed.append(("all but the network", sum(ms for ms, _ in others), cpu_sum))
        for step, milliseconds, cpu_ms in timed:
            if milliseconds <= 0:
                continue
            cells = [_megapixels(pixels), method, step, f"{milliseconds / 1000:.3f}",
                     "" if cpu_ms is None else f"{cpu_ms / 1000:.3f}",
                     _ratio(cpu_ms, milliseconds)]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
    print("\nCPU: process CPU time of the step (every thread), CPU / wall: over its wall time")
    print(f"(the best in-process run): {os.cpu_count()} means every core busy throughout.")
    print("All but the network: the request's other steps together; palettenet's in process /")
    print("network is about 1 + this over the network's time.")

    print("\n| MP | PNG write s | CPU / wall | PNG read s | CPU / wall | read + write / network "
          "| file MB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for pixels, network, (write, read, size) in files:
        cells = [_megapixels(pixels), f"{write[0]:.2f}", _ratio(write[1], write[0]),
                 f"{read[0]:.2f}", _ratio(read[1], read[0]), _ratio(write[0] + read[0], network),
                 f"{size / 1e6:.1f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print("\nThe CLI's own reading (libpng) of the benchmark photo as an RGBA8 PNG (written by")
    print("libpng at level 1) and writing of it (backend.cli.imagefile, default fast PNG:")
    print("pngwrite), best of --repeat. Target: read + write <= the network call.")

    print("\n| command | start s |")
    print("|---|---:|")
    for command, seconds in cli:
        print(f"| {command} | {seconds:.2f} |")
    print("\nWall time of the whole command in a new process (best of 3), the info command")
    print("asking this benchmark's daemon. Target: <= 0.5 s; none of them imports torch.")


def network_rise_mb(engine, pixels: np.ndarray) -> float | None:
    """How far resident memory rises during the network call alone at this photo's working
    size (the model's activations, the same for every layer size above it)."""
    from backend.core.color import rgb_to_lab_np
    from backend.core.pixels import FORMATS, Layer
    from backend.core.recolor import predict, prepare
    from backend.service.protocol import parse_palette

    if engine.model is None:
        return None
    working = prepare(Layer(pixels, FORMATS["RGBA8"]))
    palette = rgb_to_lab_np(parse_palette(PALETTE))
    with PeakMemory(os.getpid()) as meter:
        in_a_thread(lambda: predict(engine.model, [working.rgb], [palette], engine.half, [palette]))
    return meter.rise_mb


def at_once(address: str, count: int, method: str, pixels: np.ndarray) -> float:
    """Seconds until `count` clients, sending one request each at the same moment, all have
    their answers."""
    from backend.service.client import Client

    clients = [Client(address, timeout_s=3600) for _ in range(count)]
    ready = threading.Barrier(count + 1)
    failures = []

    def send(client):
        ready.wait()
        reply, _ = client.request(header(method, pixels), pixels)
        if not reply.get("ok"):
            failures.append(reply.get("error"))

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    for client in clients:
        client.close()
    if failures:
        raise SystemExit(f"bench: {failures[0]}")
    return seconds


def time_files(pixels: np.ndarray, folder: str, repeat: int = 1) -> tuple[tuple, tuple, int]:
    """((wall, CPU seconds) to write, the same to read, bytes written) of the photo as a
    PNG through the CLI's image file code; the best wall time of `repeat` runs each."""
    import imagecodecs

    from backend.cli.imagefile import read_image, write_image

    source, result = Path(folder) / "source.png", Path(folder) / "result.png"
    source.write_bytes(imagecodecs.png_encode(pixels, level=1))
    read = write = (float("inf"), 0.0)
    for _ in range(repeat):
        picture, seconds = _timed(read_image, source)
        read = min(read, seconds)
        write = min(write, _timed(write_image, result, picture, picture.pixels)[1])
    return write, read, result.stat().st_size


def _timed(function, *args) -> tuple[object, tuple[float, float]]:
    """(function(*args), (wall seconds, process CPU seconds, all threads))"""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def time_cli_start(address: str) -> list[tuple[str, float]]:
    """(command, best wall seconds of 3) for the commands that must start at once."""
    commands = [["--version"], ["--help"], ["recolor", "--help"],
                ["info", "--server", address, "--timeout", "60"]]  # fmt: skip
    timed = []
    for command in commands:
        best = None
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "backend.cli.main", *command],
                           check=True, capture_output=True)  # fmt: skip
            seconds = time.perf_counter() - start
            best = seconds if best is None else min(best, seconds)
        timed.append(("palettenet " + " ".join(command).replace(address, "ADDRESS"), best))
    return timed


def _mb(value) -> str:
    return "n/a" if value is None else f"{value:.0f}"


# --- quality of the working-size path -------------------------------------------------------
def run_quality(args) -> int:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from backend.core.color import delta_e76, rgb_to_lab, rgb_to_lab_np, to_uint8
    from backend.core.pixels import FORMATS, Layer
    from backend.core.recolor import predict, prepare, recolor_layer, recolor_rgb
    from backend.core.weights import load_weights
    from backend.service.engine import resolve_device
    from backend.service.protocol import parse_palette

    target = rgb_to_lab_np(parse_palette(PALETTE))
    with tempfile.TemporaryDirectory() as folder:
        weights, note = weights_for(args, folder)
        model = load_weights(weights, resolve_device(args.device))
    print(f"weights {weights}{note}; palette {','.join(PALETTE)}\n")
    print("| photo | size | full-size network s | daemon path s | mean dE | edge dE "
          "| bilinear mean dE | bilinear edge dE |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def lab(rgb):
        return rgb_to_lab(torch.from_numpy(np.asarray(rgb, np.float32)))

    totals, worst = [], None
    for path in args.quality:
        with Image.open(path) as image:
            rgb8 = np.asarray(image.convert("RGB"))
        rgb = rgb8.astype(np.float32) / 255
        height, width = rgb8.shape[:2]
        layer = Layer(np.dstack([rgb8, np.full((height, width), 255, np.uint8)]), FORMATS["RGBA8"])
        start = time.perf_counter()
        truth = to_uint8(recolor_rgb(model, rgb, target)) / 255  # what 8 bits can hold
        full_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ours = recolor_layer(model, layer, target)[..., :3] / np.float32(255)
        ours_seconds = time.perf_counter() - start
        working = prepare(layer)
        (result,) = predict(model, [working.rgb], [target])
        change = torch.from_numpy(result - working.rgb).permute(2, 0, 1)[None]
        change = F.interpolate(change, size=(height, width), mode="bilinear")[0].permute(1, 2, 0)
        bilinear = to_uint8((torch.from_numpy(rgb) + change).clamp(0, 1).numpy()) / 255

        lightness = lab(rgb)[..., 0].numpy()
        gradient = np.hypot(*np.gradient(lightness))
        edges = gradient >= np.percentile(gradient, 95)
        errors = [delta_e76(lab(x), lab(truth)).numpy() for x in (ours, bilinear)]
        row = [errors[0].mean(), errors[0][edges].mean(), errors[1].mean(), errors[1][edges].mean()]
        totals.append(row)
        cells = [path.name, f"{width} x {height}", f"{full_seconds:.1f}", f"{ours_seconds:.1f}"]
        print("| " + " | ".join(cells + [f"{v:.2f}" for v in row]) + " |", flush=True)
        window = _worst_window(errors[1] - errors[0])
        if worst is None or window[0] > worst[0]:
            worst = (*window, rgb, truth, ours, bilinear)
    means = np.mean(totals, axis=0)
    print("| **mean** | | | | " + " | ".join(f"**{v:.2f}**" for v in means) + " |")
    if args.crop is not None:
        _, top, left, *images = worst
        _save_crop(args.crop, images, top, left)
        print(f"\ncrop: {args.crop} (source | network at full size | daemon path | bilinear)")
    return 0


CROP = 96  # pixels of the photo in each panel of the crop
ZOOM = 3


def _worst_window(difference: np.ndarray) -> tuple[float, int, int]:
    """(score, top, left) of the CROP x CROP window where bilinear upsampling is worst
    compared with the daemon path: where a halo would show."""
    from scipy.ndimage import uniform_filter

    score = uniform_filter(difference, CROP)
    half = CROP // 2
    inner = score[half : -half or None, half : -half or None]
    y, x = np.unravel_index(np.argmax(inner), inner.shape)
    return float(inner[y, x]), int(y), int(x)


def _save_crop(path: Path, images, top: int, left: int) -> None:
    from PIL import Image

    from backend.core.color import to_uint8

    panels = []
    for image in images:
        crop = np.asarray(image)[top : top + CROP, left : left + CROP]
        crop = to_uint8(crop)
        panels.append(crop.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1))
        panels.append(np.full((CROP * ZOOM, 4, 3), 255, np.uint8))  # a white gap
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(panels[:-1], axis=1)).save(path)
