"""The CLI with palette files (-p FILE, --source-palette FILE, palette -o FILE) and over many
images in one go (issue 18 parts 2 and 3, issue 16's throughput goal), as a user runs it."""

import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from backend.cli.main import main
from backend.cli.palettefile import read_palette
from tests.conftest import small_photo
from tests.servers import random_weights
from tests.test_cli import assert_one_line_error, palettenet

TARGET = ["#0b1d51", "#725ac1", "#f7ece1"]


def one_line_error(status, stderr, *words):
    assert_one_line_error(status, stderr, *words)
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(small_photo("coffee", 48)).save(path)
    return path


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


# --- palette files as -p and --source-palette ---------------------------------------------
def palette_files(folder):
    """The same three colours in every format the CLI reads."""
    rgb = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in TARGET]
    files = {"gpl": "GIMP Palette\nName: t\n" + "".join("{} {} {} x\n".format(*c) for c in rgb),
             "hex": "".join(c[1:] + "\n" for c in TARGET)}  # fmt: skip
    for suffix, text in files.items():
        (folder / f"pal.{suffix}").write_text(text)
    from backend.cli.palettefile import kpl_bytes

    (folder / "pal.kpl").write_bytes(kpl_bytes("t", TARGET))
    strip = np.repeat(np.array(rgb, np.uint8)[None], 8, axis=0).repeat(5, axis=1)
    Image.fromarray(strip).save(folder / "strip.png")
    return [folder / name for name in ("pal.gpl", "pal.hex", "pal.kpl", "strip.png")]


def test_palette_files_give_the_same_result_as_hex(photo, tmp_path, weights):
    common = ["--weights", str(weights)]
    main(["recolor", str(photo), "-p", ",".join(TARGET), "-o", str(tmp_path / "hex.png"),
          *common])  # fmt: skip
    expected = pixels(tmp_path / "hex.png")
    for file in palette_files(tmp_path):
        out = tmp_path / f"from-{file.stem}-{file.suffix[1:]}.png"
        main(["recolor", str(photo), "-p", str(file), "-o", str(out), *common])
        assert np.array_equal(pixels(out), expected), file.name


def test_source_palette_file_pairs_entry_by_entry(photo, tmp_path, weights):
    """An identity edit from files (source = target) gives the photo back bit for bit."""
    (tmp_path / "same.gpl").write_text("GIMP Palette\n10 20 30\n200 100 50\n")
    out = tmp_path / "same.png"
    main(["recolor", str(photo), "-p", str(tmp_path / "same.gpl"), "--source-palette",
          str(tmp_path / "same.gpl"), "-o", str(out), "--weights", str(weights)])  # fmt: skip
    assert np.array_equal(pixels(out), pixels(photo))


def test_palette_file_errors_in_one_line(photo, tmp_path):
    (tmp_path / "bad.gpl").write_text("GIMP Palette\n1 2 3\n4 5 six\n")
    status, _, stderr = palettenet("recolor", photo, "-p", tmp_path / "bad.gpl", "-o",
                                   tmp_path / "o.png")  # fmt: skip
    one_line_error(status, stderr, "bad.gpl", "line 3", "R G B")
    many = "GIMP Palette\n" + "".join(f"{i} {i} {i}\n" for i in range(20))
    (tmp_path / "many.gpl").write_text(many)
    status, _, stderr = palettenet("recolor", photo, "-p", "#ffffff", "--source-palette",
                                   tmp_path / "many.gpl", "-o", tmp_path / "o.png")  # fmt: skip
    one_line_error(status, stderr, "--source-palette", "20 colours", "1 to 12")
    status, _, stderr = palettenet("recolor", photo, "-p", tmp_path / "none.gpl", "-o",
                                   tmp_path / "o.png")  # fmt: skip
    one_line_error(status, stderr, "none.gpl", "No such file")
    Image.new("RGB", (5000, 4000), "red").save(tmp_path / "huge-strip.png")
    status, _, stderr = palettenet("recolor", photo, "-p", tmp_path / "huge-strip.png", "-o",
                                   tmp_path / "o.png")  # fmt: skip
    one_line_error(status, stderr, "huge-strip.png", "20,000,000 pixels", "palette strip")
    os.mkfifo(tmp_path / "fifo.gpl")
    status, _, stderr = palettenet("recolor", photo, "-p", tmp_path / "fifo.gpl", "-o",
                                   tmp_path / "o.png", timeout=30)  # fmt: skip
    one_line_error(status, stderr, "fifo.gpl", "not a regular file")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("suffix", [".gpl", ".kpl"])
def test_palette_command_writes_the_layer_palette(photo, tmp_path, capsys, suffix):
    out = tmp_path / f"coffee{suffix}"
    main(["palette", str(photo), "-k", "4", "-o", str(out)])
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]]
    written = read_palette(out)
    assert list(written.colors) == printed and len(printed) == 4
    assert written.name == "photo"
    if suffix == ".kpl":
        assert zipfile.ZipFile(out).read("mimetype") == b"krita/x-colorset"


def test_palette_command_refuses_other_types_before_any_work(photo, tmp_path):
    status, _, stderr = palettenet("palette", photo, "-o", tmp_path / "x.ase")
    one_line_error(status, stderr, ".gpl or .kpl")


def test_palette_command_never_writes_over_its_input_image(photo, tmp_path):
    image = tmp_path / "art.gpl"  # a PNG given a palette file's name
    image.write_bytes(photo.read_bytes())
    status, _, stderr = palettenet("palette", image, "-o", image)
    one_line_error(status, stderr, "it is the input image")
    assert image.read_bytes() == photo.read_bytes()


def test_help_names_the_formats():
    status, out, _ = palettenet("recolor", "--help")
    assert status == 0
    for word in (".gpl", ".kpl", ".ase", ".aco", "hex", "strip image", "--overwrite"):
        assert word in " ".join(out.split()), word


# --- many images in one go ----------------------------------------------------------------
def flat(colours, size=24) -> np.ndarray:
    """Vertical bands of flat colours."""
    bands = np.array_split(np.arange(size), len(colours))
    image = np.zeros((size, size, 3), np.uint8)
    for colour, band in zip(colours, bands):
        image[:, band] = colour
    return image


RED, BLUE, GREEN, GREY = (200, 30, 30), (30, 40, 200), (40, 180, 60), (128, 128, 128)


def test_a_folder_with_one_mapping_and_an_odd_file(tmp_path):
    """Three images sharing colours in different proportions: each colour gets the same
    result in every image (one mapping, chang2015 is a per-colour function); the odd file
    gets its own line and the exit status says something failed."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    Image.fromarray(flat([RED, BLUE, GREY])).save(folder / "a.png")
    Image.fromarray(flat([RED, RED, RED, GREEN])).save(folder / "b.png")
    Image.fromarray(flat([BLUE, GREEN, GREY, GREY, GREY])).save(folder / "c.gif")
    (folder / "readme.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"skipped")
    status, stdout, stderr = palettenet("recolor", folder, "-p", "#102030,#ffaa00,#3c9,#e0e0ff",
                                        "-o", out, "--method", "chang2015")  # fmt: skip
    assert status == 1, stderr
    assert "readme.txt" in stderr and "not an image file" in stderr and "Traceback" not in stderr
    assert "one mapping for all 3 inputs" in stderr  # those read
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert "recoloured 3 of 4 images" in stdout and "images/s" in stdout and "MP/s" in stdout
    results = {name: pixels(out / f"{name}.png") for name in "abc"}
    sources = {"a": flat([RED, BLUE, GREY]), "b": flat([RED, RED, RED, GREEN]),
               "c": flat([BLUE, GREEN, GREY, GREY, GREY])}  # fmt: skip
    for colour in (RED, BLUE, GREEN, GREY):
        seen = {tuple(results[n][np.all(sources[n] == colour, axis=-1)][0])
                for n in "abc" if np.all(sources[n] == colour, axis=-1).any()}  # fmt: skip
        assert len(seen) == 1, (colour, seen)
        assert seen != {colour}  # and it was recoloured


@pytest.mark.parametrize("source", [None, "#6b3d22,#d9b48f,#f2e6d9"])
def test_palettenet_over_a_folder_gives_one_colour_one_result_in_every_image(
    tmp_path, weights, source
):
    """Frames of a pan over a photo: every frame goes with one reference image (a grid of
    all of them), so PaletteNet's mapping is one for the set, as chang2015's is."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    photo = small_photo("coffee", 96)
    frames = {f"f{i}": np.ascontiguousarray(photo[:48, 8 * i : 8 * i + 64]) for i in range(3)}
    for name, frame in frames.items():
        Image.fromarray(frame).save(folder / f"{name}.png")
    more = [] if source is None else ["--source-palette", source]
    status, stdout, stderr = palettenet("recolor", folder, "-p", ",".join(TARGET), "-o", out,
                                        "--weights", weights, *more)  # fmt: skip
    assert status == 0, stderr
    results = {name: pixels(out / f"{name}.png") for name in frames}
    found = {}
    for name, frame in frames.items():
        for colour, result in zip(frame.reshape(-1, 3), results[name].reshape(-1, 3)):
            found.setdefault(tuple(colour), set()).add(tuple(result))
    shared = [colour for colour, seen in found.items() if len(seen) > 0]
    assert len(shared) > 1000 and all(len(found[c]) == 1 for c in shared)
    assert all(not np.array_equal(frames[n], results[n]) for n in frames)


def test_existing_outputs_are_kept_unless_asked(tmp_path, photo):
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").write_bytes(b"mine")
    args = ["recolor", photo, tmp_path / "photo2.png", "-p", "#123456", "-o", out,
            "--method", "chang2015"]  # fmt: skip
    Image.open(photo).save(tmp_path / "photo2.png")
    status, _, stderr = palettenet(*args)
    one_line_error(status, stderr, "photo.png", "already exist", "--overwrite")
    assert (out / "photo.png").read_bytes() == b"mine"
    status, stdout, stderr = palettenet(*args, "--overwrite")
    assert status == 0, stderr
    assert pixels(out / "photo.png").shape == pixels(photo).shape


def test_batch_outputs_are_checked_before_any_work(tmp_path, photo):
    other = tmp_path / "other"
    other.mkdir()
    Image.open(photo).save(other / "photo.png")
    (tmp_path / "out").mkdir()
    cases = [
        ([photo, other / "photo.png", "-o", tmp_path / "missing"], "does not exist"),
        ([photo, other / "photo.png", "-o", tmp_path / "out.png"], "is a file: name a folder"),
        ([photo, other / "photo.png", "-o", tmp_path / "out"], "both be written"),
        ([other, "-o", other], "is an input"),
        ([other, "-o", tmp_path / "out", "--mask", photo], "--mask needs a single input"),
    ]
    for args, words in cases:
        status, _, stderr = palettenet("recolor", *args, "-p", "#123456")
        one_line_error(status, stderr, words)
    assert not list((tmp_path / "out").iterdir())


def test_batch_through_a_daemon_matches_in_process(daemon, tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("coffee", "astronaut"):
        Image.fromarray(small_photo(name, 40)).save(folder / f"{name}.png")
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    assert main(["recolor", str(folder), "-p", ",".join(TARGET), "-o", str(here),
                 "--weights", str(weights)]) == 0  # fmt: skip
    assert main(["recolor", str(folder), "-p", ",".join(TARGET), "-o", str(there),
                 "--server", daemon.address]) == 0  # fmt: skip
    for name in ("coffee.png", "astronaut.png"):
        assert np.array_equal(pixels(here / name), pixels(there / name)), name


def test_batch_through_a_daemon_with_a_source_palette_needs_no_torch(daemon, tmp_path):
    """With --server and --source-palette the client only reads, sends and writes: torch
    (seconds to load) stays out of it."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    for name in ("a", "b"):
        Image.fromarray(flat([RED, BLUE])).save(folder / f"{name}.png")
    code = (
        "import sys\n"
        "from backend.cli.main import main\n"
        f"status = main(['recolor', {str(folder)!r}, '-p', '#102030,#ffaa00', '--source-palette',"
        f" '#c81e1e,#1e28c8', '-o', {str(out)!r}, '--server', {daemon.address!r}])\n"
        "assert status == 0, status\n"
        "print('torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False", run.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert not np.array_equal(pixels(out / "a.png"), flat([RED, BLUE]))


def test_a_folder_of_one_image_gives_what_the_single_image_command_gives(tmp_path, photo):
    """One input's shared mapping is its own pairing, left to the engine as for one image:
    the same pixels either way."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    Image.open(photo).save(folder / "photo.png")
    for method in ("chang2015", "palettenet"):
        main(["recolor", str(photo), "-p", ",".join(TARGET), "-o", str(tmp_path / "one.png"),
              "--method", method])  # fmt: skip
        main(["recolor", str(folder), "-p", ",".join(TARGET), "-o", str(out), "--method",
              method, "--overwrite"])  # fmt: skip
        assert np.array_equal(pixels(out / "photo.png"), pixels(tmp_path / "one.png")), method


def test_batch_waits_for_a_busy_daemon(tmp_path):
    """A daemon that takes 11 s for the second image (longer than the client's 10 s wait for
    an unreachable daemon): both images come back. (A reused connection counted the wait
    for a reply as a wait for the daemon and gave up on the second image.)"""
    address, stop = slow_daemon([0, 11])
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    for name in ("a", "b"):
        Image.fromarray(flat([RED, BLUE])).save(folder / f"{name}.png")
    try:
        status = main(["recolor", str(folder), "-p", "#102030,#ffaa00", "--source-palette",
                       "#c81e1e,#1e28c8", "-o", str(out), "--jobs", "1",
                       "--server", address])  # fmt: skip
    finally:
        stop()
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def slow_daemon(seconds, answers: int | None = None):
    """A fake daemon on a random loopback port that answers recolor requests with their
    own pixels after `seconds` (or a list: the wait before each answer, then that many
    answers), and after `answers` of them (if given) is gone: (address, stop)."""
    waits = list(seconds) if isinstance(seconds, (list, tuple)) else None
    if waits is not None:
        answers = len(waits)
    import threading

    import zmq

    from backend.service.protocol import ok_reply, parse_request

    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    stopping = threading.Event()

    def serve():
        served = 0
        while not stopping.is_set() and served != answers:
            if not socket.poll(100):
                continue
            envelope_and_body = socket.recv_multipart()
            split = envelope_and_body.index(b"") + 1
            request = parse_request(envelope_and_body[split:])
            time.sleep(seconds if waits is None else waits[served])
            reply = ok_reply(request.id, width=request.width, height=request.height,
                             pixel_format=request.pixel_format, method=request.method)  # fmt: skip
            reply.frames = [bytes(request.pixels)]
            socket.send_multipart(envelope_and_body[:split] + reply.encode())
            served += 1
        socket.close(linger=0)

    server = threading.Thread(target=serve, daemon=True)
    server.start()

    def stop():
        stopping.set()
        server.join(timeout=30)
        context.term()

    return f"tcp://127.0.0.1:{port}", stop


def test_ctrl_c_stops_a_batch_soon_and_leaves_only_whole_files(tmp_path):
    """Ctrl+C halfway: the images in hand are finished (written whole), no other is
    started, no temporary file is left, exit status 130. (The pool used to run every queued
    image first: Ctrl+C took effect only when the whole batch was done.)"""
    import signal

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    for index in range(12):
        Image.fromarray(flat([RED, BLUE])).save(folder / f"{index:02d}.png")
    address, stop = slow_daemon(0.5)
    command = [sys.executable, "-m", "backend.cli.main", "recolor", str(folder), "-p",
               "#102030,#ffaa00", "--source-palette", "#c81e1e,#1e28c8", "-o", str(out),
               "--jobs", "1", "--server", address]  # fmt: skip
    try:
        # As from a terminal: a test run started in the background (CI, nohup) ignores
        # SIGINT, the child would inherit that, and Python then never raises
        # KeyboardInterrupt.
        def default_sigint():
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=default_sigint)  # fmt: skip
        deadline = time.monotonic() + 60
        while not any(p.suffix == ".png" for p in out.iterdir()):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        stop()
    assert run.returncode == 130, stderr
    assert b"Traceback" not in stderr, stderr
    written = sorted(p.name for p in out.iterdir())
    assert 1 <= len(written) <= 3, written  # the one seen, and the one in hand
    assert all(name.endswith(".png") for name in written), written  # no temporary file
    for name in written:
        assert pixels(out / name).shape == (24, 24, 3)


def test_a_symlink_loop_in_the_folder_is_that_files_failure(tmp_path):
    """A folder holding a symlink loop (and one that dangles): one line each, the other
    images recoloured; it was a traceback before any work."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    Image.fromarray(flat([RED, BLUE])).save(folder / "a.png")
    (folder / "loop1.png").symlink_to("loop2.png")
    (folder / "loop2.png").symlink_to("loop1.png")
    (folder / "gone.png").symlink_to("missing.png")
    status, stdout, stderr = palettenet("recolor", folder, "-p", "#102030,#ffaa00", "-o", out,
                                        "--method", "chang2015")  # fmt: skip
    assert status == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert "loop1.png" in stderr and "symbolic links" in stderr
    assert "recoloured 1 of 4 images" in stdout
    assert [p.name for p in out.iterdir()] == ["a.png"]


def test_a_daemon_that_is_gone_stops_the_run(tmp_path):
    """The daemon answers one image and goes away: the next image fails, a ping finds
    nobody, and the rest are not attempted (each used to wait out its own timeout: a
    thousand images, hours of 'could not be reached')."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    for index in range(8):
        Image.fromarray(flat([RED, BLUE])).save(folder / f"{index}.png")
    address, stop = slow_daemon(0, answers=1)
    try:
        status, stdout, stderr = palettenet(
            "recolor", folder, "-p", "#102030,#ffaa00", "--source-palette", "#c81e1e,#1e28c8",
            "-o", out, "--jobs", "1", "--server", address, "--timeout", "2", timeout=120,
        )  # fmt: skip
    finally:
        stop()
    assert status == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert [p.name for p in out.iterdir()] == ["0.png"]
    assert stderr.count(f"no reply from {address}") == 1, stderr
    assert "answers no more" in stderr and "6 images not attempted" in stderr, stderr
    assert "recoloured 1 of 8 images" in stdout


def test_a_file_named_twice_is_recoloured_once(tmp_path):
    """`palettenet recolor in/*.png in -o out` names each file twice: each is recoloured
    once (it was refused: 'in/a.png and in/a.png would both be written ...: rename one')."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    for name in ("a", "b"):
        Image.fromarray(flat([RED, BLUE])).save(folder / f"{name}.png")
    status, stdout, stderr = palettenet("recolor", folder / "a.png", folder, f"{folder}/./b.png",
                                        "-p", "#102030,#ffaa00", "-o", out,
                                        "--method", "chang2015")  # fmt: skip
    assert status == 0, stderr
    assert "recoloured 2 of 2 images" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_palettes_every_image_would_refuse_are_one_error_before_any_work(tmp_path):
    """--source-palette and -p of different lengths: one line, before any image is read or
    sent (it was the same error once per image, after loading the engine)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(flat([RED, BLUE])).save(folder / f"{name}.png")
    status, _, stderr = palettenet("recolor", folder, "-p", "#102030,#ffaa00,#ffffff",
                                   "--source-palette", "#c81e1e,#1e28c8", "-o", out)  # fmt: skip
    one_line_error(status, stderr, "source_palette has 2 colours and palette 3")
    assert not list(out.iterdir())


def test_the_reference_fits_max_pixels_and_small_images_count_as_much_as_large(tmp_path):
    """Four pictures under a low --max-pixels: the reference grid is made to fit it (QA saw
    every file fail); and a 16-pixel sprite among photos fills its cell of the grid."""
    from types import SimpleNamespace

    from backend.cli.batch import Job, Kept, shared_mapping

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(small_photo("coffee", 400)[:, index:]).save(folder / f"p{index}.png")
    sprite = np.zeros((16, 16, 3), np.uint8)
    sprite[4:12, 4:12] = (250, 20, 20)
    Image.fromarray(sprite).save(folder / "sprite.png")
    jobs = [Job(path, tmp_path / path.name) for path in sorted(folder.iterdir())]
    args = SimpleNamespace(max_pixels=200_000, jobs=1)
    _, _, reference = shared_mapping(jobs, TARGET, args, {}, Kept(), None, True)
    assert reference.shape[0] * reference.shape[1] <= 200_000
    cell = reference.shape[1] // 3  # five inputs: a 3 x 2 grid
    sprite_cell = reference[cell : 2 * cell, cell : 2 * cell]  # the fifth
    assert (sprite_cell[..., 3] == 255).mean() > 0.9  # enlarged to its cell
    assert (np.all(sprite_cell[..., :3] == (250, 20, 20), axis=-1)).mean() > 0.2
    out = tmp_path / "out"
    out.mkdir()
    status, _, stderr = palettenet("recolor", folder, "-p", ",".join(TARGET), "-o", out,
                                   "--max-pixels", "200000", "--method", "palettenet")  # fmt: skip
    assert status == 0, stderr


@pytest.mark.parametrize("method", ["palettenet", "chang2015"])
def test_a_saved_reference_makes_a_later_run_match(tmp_path, weights, method):
    """--save-reference, then --reference: recolouring some of the frames again, or one
    frame alone, gives exactly the first run's pixels (QA: a palettenet set could not be
    redone to match)."""
    folder, first, again, alone = (tmp_path / name for name in ("in", "a", "b", "c"))
    for path in (folder, first, again, alone):
        path.mkdir()
    photo = small_photo("coffee", 96)
    for index in range(4):
        Image.fromarray(np.ascontiguousarray(photo[:48, 8 * index : 8 * index + 64])).save(
            folder / f"f{index}.png")  # fmt: skip
    saved = tmp_path / "ref.png"
    common = ["-p", ",".join(TARGET), "--weights", weights, "--method", method]
    status, _, stderr = palettenet("recolor", folder, "-o", first, "--save-reference", saved,
                                   *common)  # fmt: skip
    assert status == 0 and saved.exists(), stderr
    status, _, stderr = palettenet("recolor", folder / "f1.png", folder / "f3.png", "-o", again,
                                   "--reference", saved, *common)  # fmt: skip
    assert status == 0, stderr
    status, _, stderr = palettenet("recolor", folder / "f2.png", "-o", alone / "f2.png",
                                   "--reference", saved, *common)  # fmt: skip
    assert status == 0, stderr
    for name in ("f1.png", "f3.png"):
        assert np.array_equal(pixels(again / name), pixels(first / name)), name
    assert np.array_equal(pixels(alone / "f2.png"), pixels(first / "f2.png"))
    status, _, stderr = palettenet("recolor", folder / "f2.png", "-o", alone / "x.png",
                                   "--save-reference", saved, *common)  # fmt: skip
    one_line_error(status, stderr, "--save-reference needs several inputs")
