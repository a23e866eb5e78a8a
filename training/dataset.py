"""Training pairs from a prepared dataset, with load-time augmentation.

Every variant of a photo shares the photo's L, so any two variants (i, j) of one photo make a
training pair: input = variant i, target palette = palette of j, ground truth = ab of j.
Global pairs take two hue variants; local pairs go from the photo to one of its local edits
or back. Batches are a pure function of (seed, step, rank), so a resumed run sees exactly the
batches it would have seen, and DDP ranks see different ones.
"""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.color import lab_to_net, rgb_to_lab

CROP_SCALES = (0.5, 1.0)  # side of a random crop, as a fraction of the photo's short side


class Batch(dict):
    """source (B,3,S,S) and target_palette (B,18) in network range, target_ab (B,2,S,S),
    plus source_palette (B,18) for the discriminator's mismatched pairs."""


def parse_mix(text: str) -> dict:
    """'hue=0.7,local=0.3' -> {'hue': 0.7, 'local': 0.3} (normalised)."""
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in ("hue", "local"):
            raise ValueError(f"unknown variant kind {kind!r} in mix {text!r} (use hue, local)")
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
        self.hue_variants = np.flatnonzero(kinds != "local")  # the original is hue shift 0
        self.local_variants = np.flatnonzero(kinds == "local")
        self.mix = {k: w for k, w in mix.items() if w > 0}
        if "local" in self.mix and len(self.local_variants) == 0:
            raise ValueError(f"{root} has no local-edit variants; prepare with --local-variants")
        if "hue" in self.mix and len(self.hue_variants) < 2:
            raise ValueError(f"{root} has no hue-shift variants; prepare with --variants 2+")

    def __len__(self):
        return len(self.rgb)

    def choose_pair(self, rng):
        """-> (photo, input variant, target variant)."""
        photo = int(rng.integers(len(self)))
        kinds = list(self.mix)
        kind = kinds[rng.choice(len(kinds), p=list(self.mix.values()))]
        if kind == "hue":
            i, j = rng.choice(self.hue_variants, size=2, replace=False)
        else:
            i, j = 0, int(rng.choice(self.local_variants))
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
        items = [self._one(p, i, j, size, rng) for p, i, j in pairs]
        return Batch({key: torch.stack([item[key] for item in items]) for key in items[0]})

    def _one(self, photo, i, j, size, rng):
        height, width = self.rgb.shape[1:3]
        if rng is None:
            top, left, crop_h, crop_w, flip = 0, 0, height, width, False
        else:
            side = int(min(height, width) * rng.uniform(*CROP_SCALES))
            crop_h = crop_w = max(side, 16)
            top = int(rng.integers(height - crop_h + 1))
            left = int(rng.integers(width - crop_w + 1))
            flip = bool(rng.random() < 0.5)
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        rgb = torch.from_numpy(self.rgb[photo][window] / np.float32(255))
        lightness = rgb_to_lab(rgb)[..., :1]
        ab = torch.from_numpy(
            np.asarray(self.ab[photo, [i, j]][:, window[0], window[1]], dtype=np.float32)
        )
        source = torch.cat([lightness, ab[0]], -1)
        target = torch.cat([lightness, ab[1]], -1)
        both = lab_to_net(torch.stack([source, target])).permute(0, 3, 1, 2)
        if rng is None or crop_h != size or crop_w != size:
            both = F.interpolate(
                both,
                size=(size, size) if rng is not None else _fit(height, width, size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        if flip:
            both = both.flip(-1)
        palettes = lab_to_net(torch.from_numpy(self.palettes[photo, [i, j]]))
        return {
            "source": both[0],
            "target_ab": both[1, 1:],
            "target_palette": palettes[1].reshape(-1),
            "source_palette": palettes[0].reshape(-1),
        }


def _fit(height, width, size):
    """Validation keeps the photo's aspect: long side = size, multiple of 16."""
    scale = size / max(height, width)
    return (max(16, round(height * scale / 16) * 16), max(16, round(width * scale / 16) * 16))


def training_batch(
    dataset: PairDataset, step: int, *, seed: int, rank: int, batch: int, size: int
) -> Batch:
    rng = np.random.default_rng([seed, step, rank])
    pairs = [dataset.choose_pair(rng) for _ in range(batch)]
    return dataset.make(pairs, size, rng)
