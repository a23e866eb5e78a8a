import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data, transform

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry")
TORCH_THREADS = torch.get_num_threads()  # as a daemon started by a test has them


@pytest.fixture(autouse=True)
def torch_threads_as_at_start():
    """Every test starts with torch's default thread count. The training tests run
    `train --threads 1` in this process, and a convolution summed over another number of
    threads rounds a little differently: an in-process result then differed from a
    daemon's by one level in one pixel (seen in CI)."""
    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)
    yield


def small_photo(name: str, long_side: int = 128) -> np.ndarray:
    """A scikit-image bundled photo as uint8 RGB, resized (no data from outside the repo)."""
    image = getattr(data, name)()
    scale = long_side / max(image.shape[:2])
    resized = transform.resize(
        image, (round(image.shape[0] * scale), round(image.shape[1] * scale)), anti_aliasing=True
    )
    return (resized * 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """Six bundled photos as JPEGs, long side 128."""
    folder = tmp_path_factory.mktemp("photos")
    for name in SAMPLE_PHOTOS:
        Image.fromarray(small_photo(name)).save(folder / f"{name}.jpg", quality=95)
    return folder


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A real `palettenet serve` on loopback with random (seeded) weights."""
    from tests.servers import Server, random_weights

    weights = random_weights(tmp_path_factory.mktemp("weights"))
    server = Server("serve", "--bind", "tcp://127.0.0.1:*", "--weights", weights, "--device", "cpu")
    yield server
    server.stop()


def free_display() -> int:
    for number in range(90, 200):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


def _accepts(display: str) -> bool:
    """Whether an X client can connect (the socket exists before the server answers)."""
    if shutil.which("xdotool") is None:
        return True
    probe = subprocess.run(["xdotool", "getdisplaygeometry"], env={"DISPLAY": display},
                           capture_output=True, timeout=10)  # fmt: skip
    return probe.returncode == 0


@pytest.fixture
def xvfb():
    """One persistent Xvfb for the test (xvfb-run -a failed 1 run in 15 here)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb): editor GUI tests cannot run")
    number = free_display()
    command = ["Xvfb", f":{number}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (Path(f"/tmp/.X11-unix/X{number}").exists() and _accepts(f":{number}")):
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail("Xvfb did not start")
        time.sleep(0.1)
    yield f":{number}"
    server.terminate()
    server.wait(10)
