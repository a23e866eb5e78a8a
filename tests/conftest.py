import numpy as np
import pytest
from PIL import Image
from skimage import data, transform

SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry")


def small_photo(name: str, long_side: int = 128) -> np.ndarray:
    """A scikit-image bundled photo as uint8 RGB, resized (tests never need ../shared)."""
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
