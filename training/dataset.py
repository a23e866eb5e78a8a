"""Training pairs from a prepared dataset, with load-time augmentation.

Every variant of a photo shares the photo's L, so any two variants (i, j) of one photo make a
training pair: input = variant i, target palette = palette of j, ground truth = ab of j.
Global pairs take two hue variants; local and multi pairs go from the photo to one of its
edits of that kind or back. Batches are a pure function of (seed, step, rank), so a resumed
run sees exactly the batches it would have seen, and DDP ranks see different ones.
"""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.core.color import lab_to_net, rgb_to_lab

MIX_KINDS = ("hue", "local", "multi")
CROP_SCALES = (0.5, 1.0)  # side of a random crop, as a fraction of the photo's short side


class Batch(dict):
    """source (B,3,S,S) and target_palette (B,18) in network range, target_ab (B,2,S,S),
    plus source_palette (B,18) for the discriminator's mismatched pairs."""


def parse_mix(text: str) -> dict:
    """'hue=0.7,local=0.3' -> {'hue': 0.7, 'local': 0.3} (normalised)."""
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in MIX_KINDS:
            known = ", ".join(MIX_KINDS)
            raise ValueError(f"unknown variant kind {kind!r} in mix {text!r} (use {known})")
        mix[kind.strip()] = float(weight)
    total = sum(mix.values())
    if total <= 0:
        raise ValueError(f"the mix {text!r} gives no weight to any kind")
    return {kind: weight / total for kind, weight in mix.items()}


class PairDataset:
    def __init__(self, root, split: str, mix: dict):
        root = Path(root)
        meta = json.loads((root / "meta.json").read_text())
        folder = root / split
        self.rgb = np.load(folder / "rgb.npy", mmap_mode="r")
        self.ab = np.load(folder / "ab.npy", mmap_mode="r")
        self.palettes = np.load(folder / "palettes.npy")
        self.names = json.loads((folder / "names.json").read_text())
        kinds = np.array(meta["kinds"])
        self.variants = {
            "hue": np.flatnonzero((kinds == "hue") | (kinds == "original")),  # shift 0 too
            "local": np.flatnonzero(kinds == "local"),
            "multi": np.flatnonzero(kinds == "multi"),
        }
        self.mix = {k: w for k, w in mix.items() if w > 0}
        if "hue" in self.mix and len(self.variants["hue"]) < 2:
            raise ValueError(f"{root} has no hue-shift variants; prepare with --variants 2+")
        for kind in ("local", "multi"):
            if kind in self.mix and len(self.variants[kind]) == 0:
                raise ValueError(
                    f"{root} has no {kind}-edit variants; prepare with --{kind}-variants"
                )

    def __len__(self):
        return len(self.rgb)

    def choose_pair(self, rng):
        """-> (photo, input variant, target variant)."""
        photo = int(rng.integers(len(self)))
        kinds = list(self.mix)
        kind = kinds[rng.choice(len(kinds), p=list(self.mix.values()))]
        if kind == "hue":
            i, j = rng.choice(self.variants["hue"], size=2, replace=False)
        else:
            i, j = 0, int(rng.choice(self.variants[kind]))
            if rng.random() < 0.5:
                i, j = j, i
        return photo, int(i), int(j)

    def fixed_pairs(self, per_photo=2, seed=1234):
        """Deterministic validation pairs: per_photo pairs of every photo."""
        rng = np.random.default_rng(seed)
        pairs = []
        for photo in range(len(self)):
            for _ in range(per_photo):
                _, i, j = self.choose_pair(rng)
                pairs.append((photo, i, j))
        return pairs

    def make(self, pairs, size, rng=None) -> Batch:
        """Assemble pairs into a batch at size x size; with rng, random crops and flips,
        without, the whole photo resized (validation)."""
        return to_network(self.crops(pairs, rng), size, square=rng is not None)

    def crops(self, pairs, rng=None) -> dict:
        """The pairs' stored pixels, cropped (one random square per batch, each pair its own
        place and flip) or whole without rng: uint8 rgb (B, h, w, 3), int8 ab (B, 2, h, w, 2)
        of the input and target variants, float32 LAB palettes (B, 2, 6, 3). Cheap: the
        colour conversion and resizing happen in to_network, on the training device."""
        height, width = self.rgb.shape[1:3]
        side = height, width
        if rng is not None:
            side = (max(16, int(min(height, width) * rng.uniform(*CROP_SCALES))),) * 2
        rgb, ab, palettes = [], [], []
        for photo, i, j in pairs:
            top, left, flip = 0, 0, False
            if rng is not None:
                top = int(rng.integers(height - side[0] + 1))
                left = int(rng.integers(width - side[1] + 1))
                flip = bool(rng.random() < 0.5)
            rows, columns = slice(top, top + side[0]), slice(left, left + side[1])
            if flip:
                columns = slice(left + side[1] - 1, left - 1 if left else None, -1)
            rgb.append(self.rgb[photo, rows, columns])
            ab.append(self.ab[photo, [i, j]][:, rows, columns])
            palettes.append(self.palettes[photo, [i, j]])
        return {
            key: torch.from_numpy(np.ascontiguousarray(np.stack(value)))
            for key, value in (("rgb", rgb), ("ab", ab), ("palettes", palettes))
        }


def to_network(crops: dict, size: int, square=True) -> Batch:
    """Crops from PairDataset.crops (on any device) -> a Batch in the network range, resized
    to size x size (square) or to long side `size` keeping the aspect (validation)."""
    rgb = crops["rgb"].float() / 255
    lightness = rgb_to_lab(rgb)[..., :1].unsqueeze(1).expand(-1, 2, -1, -1, -1)
    lab = lab_to_net(torch.cat([lightness, crops["ab"].float()], -1))  # (B, 2, h, w, 3)
    batch, _, height, width, _ = lab.shape
    both = lab.permute(0, 1, 4, 2, 3).reshape(batch, 6, height, width)
    out_size = (size, size) if square else _fit(height, width, size)
    if (height, width) != out_size:
        both = F.interpolate(
            both, size=out_size, mode="bilinear", antialias=True, align_corners=False
        )
    palettes = lab_to_net(crops["palettes"].float())
    return Batch(
        source=both[:, :3].contiguous(),
        target_ab=both[:, 4:].contiguous(),
        target_palette=palettes[:, 1].reshape(batch, -1),
        source_palette=palettes[:, 0].reshape(batch, -1),
    )


def _fit(height, width, size):
    """Validation keeps the photo's aspect: long side = size, multiple of 16."""
    scale = size / max(height, width)
    return (max(16, round(height * scale / 16) * 16), max(16, round(width * scale / 16) * 16))


def training_crops(dataset: PairDataset, step: int, *, seed: int, rank: int, batch: int) -> dict:
    """The crops of one training step (see PairDataset.crops): a pure function of
    (seed, step, rank)."""
    rng = np.random.default_rng([seed, step, rank])
    pairs = [dataset.choose_pair(rng) for _ in range(batch)]
    return dataset.crops(pairs, rng)


def training_batch(
    dataset: PairDataset, step: int, *, seed: int, rank: int, batch: int, size: int
) -> Batch:
    crops = training_crops(dataset, step, seed=seed, rank=rank, batch=batch)
    return to_network(crops, size)
