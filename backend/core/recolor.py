"""Recolouring with PaletteNet, in process.

This is the one path from user input (an image, a palette of 1..12 colours) to the network
and back; the CLI, the benchmark and the daemon all call it. A layer of any size goes through
three steps, split so the daemon can run the middle one on several layers at once:

    prepare   crop to what is visible, reduce to the working size (backend.core.fullres)
    predict   the network on a batch of working images of one size
    finish    carry the result to every pixel of the layer, mask and alpha honoured

Pieces recoloured as one (an animation's frames, a sprite set, a folder of files) share one
mapping instead: `shared_colour_map` runs the network once on a reference image of all of
them and `finish_mapped` carries that global colour mapping to each piece.
"""

from dataclasses import dataclass

import numpy as np
import torch

from backend.core import affine_u8
from backend.core.color import lab_to_net, lab_to_rgb, net_to_lab, rgb_to_lab, to_uint8
from backend.core.colormap import (
    ColourMap,
    FillKeeper,
    full_resolution_transform,
    pin_swatches,
    transfer_lightness,
)
from backend.core.fullres import WORKING_SIDE, AffineField, fit_local_affine, visible_resize
from backend.core.fullres import working_size as reduced_size
from backend.core.model import EncodedImage, PaletteNet
from backend.core.palette import pair_with_image, to_model_palette
from backend.core.pixels import Layer


def palette_to_net(palette_lab, source_lab=None):
    """A user palette (n, 3) LAB, and the colours it replaces entry by entry if known ->
    the network's (18,) target input and (18,) source input (None without a source), in
    canonical order and size."""

    def to_net(six):
        return lab_to_net(torch.as_tensor(six, dtype=torch.float32)).reshape(-1)

    if source_lab is None:
        return to_net(to_model_palette(palette_lab)), None
    source, target = to_model_palette(source_lab, paired=palette_lab)
    # The network keeps every pixel's lightness, so only the target's hue and chroma can be
    # honoured; it was trained on palettes whose colours keep their lightness, and is given
    # them that way.
    target = np.column_stack([source[:, 0], target[:, 1:]])
    return to_net(target), to_net(source)


@torch.no_grad()
def predict_lab(model: PaletteNet, lab: torch.Tensor, palette_net, source_net=None, encoded=None):
    """LAB images (B, H, W, 3) and network palettes (B, 18) (target, and source for a
    source+target model) -> recoloured LAB (source L kept). `encoded`: the images' encoding
    from `encode`, if already made (the encoder does not depend on the palette)."""
    source = lab_to_net(lab).permute(0, 3, 1, 2)
    if encoded is None:
        encoded = model.encode(source)
    ab = model.decode(encoded, palette_net, source_net).float()
    out = torch.cat([source[:, :1], ab], 1).permute(0, 2, 3, 1)
    return net_to_lab(out)


@torch.no_grad()
def encode(model: PaletteNet, images: list[np.ndarray], half=False) -> EncodedImage:
    """Working images of one size (float RGB (h, w, 3) each) -> their PaletteNet encoding,
    to give `predict` again and again with new palettes (the live preview)."""
    device = next(model.parameters()).device
    lab = rgb_to_lab(torch.as_tensor(np.stack(images), device=device))
    with torch.autocast(device.type, dtype=torch.float16, enabled=half):
        return model.encode(lab_to_net(lab).permute(0, 3, 1, 2))


def recolor_rgb(model: PaletteNet, rgb: np.ndarray, palette_lab, source_lab=None) -> np.ndarray:
    """float RGB (H, W, 3) in 0..1 -> recoloured float RGB, run at the image's own size.
    `source_lab`: the colours that palette_lab's entries replace (else the image's own)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    (result,) = predict(model, [rgb], [palette_lab], sources=[source_lab])
    return result


# --- layers of any size -------------------------------------------------------------------
@dataclass
class Working:
    """A layer reduced for the network: its visible rectangle at the working size."""

    box: tuple[int, int, int, int]  # (top, bottom, left, right) of the visible pixels
    rgb: np.ndarray  # float32 (h, w, 3), transparent areas filled with the mean colour
    weight: np.ndarray  # (h, w): the visible share of each working pixel
    # whether the visible rectangle is flat art (colormap.is_flat_art), if known already
    # (the daemon's palette step counts the same colours); None: finish checks
    flat_art: bool | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[:2]

    @property
    def direct(self) -> bool:
        """Whether the network runs at the layer's own size (no transform to fit)."""
        top, bottom, left, right = self.box
        return self.size == (bottom - top, right - left)


def prepare(layer: Layer, side: int = WORKING_SIDE) -> Working | None:
    """The working image of a layer, or None when no pixel is visible (nothing to do).

    Only the visible rectangle is used: a sprite in a corner of a big canvas gets the full
    working resolution, and empty canvas does not dilute the network's statistics."""
    box = layer.visible_box()
    if box is None:
        return None
    cropped = layer.crop(*box)
    rgb, weight = visible_resize(cropped, reduced_size(cropped.height, cropped.width, side))
    return Working(box, rgb, weight)


def predict(
    model: PaletteNet,
    images: list[np.ndarray],
    palettes: list,
    half=False,
    sources=None,
    encoded: EncodedImage | None = None,
):
    """The network on working images of one size (float RGB (h, w, 3) each) and their
    palettes (n_i, 3) LAB, as one batch -> recoloured float RGB, one per image: the
    network's outputs (network_outputs) with each layer colour that is a swatch sent to
    its target (follow_pairs).

    `sources`: per image, the colours its palette's entries replace, or None. A source+target
    model without one takes the image's own palette (what the `palette` op gives) and pairs
    the colours by lightness rank; a target-only model does not use them. `encoded`: the
    images' encoding (`encode`), if made before."""
    return predict_with_pairs(model, images, palettes, half, sources, encoded)[0]


def predict_with_pairs(model, images, palettes, half=False, sources=None, encoded=None):
    """predict, and per image the (source, target) LAB palettes it paired (network_outputs):
    what finish and ColourMap need to send every swatch colour to its target."""
    results, pairs = network_outputs(model, images, palettes, half, sources, encoded)
    follow_pairs(images, results, pairs)
    return results, pairs


@torch.no_grad()
def network_outputs(model, images, palettes, half=False, sources=None, encoded=None):
    """predict's network call alone -> (results, pairs): the recoloured float RGB images
    (lightness transferred as the palette says), and per image the (source, target) LAB
    palettes it paired, (None, palette) for a target-only model."""
    device = next(model.parameters()).device
    sources = sources if sources is not None else [None] * len(images)
    targets, source_inputs, pairs = [], [], []
    for image, palette, source in zip(images, palettes, sources):
        if not model.needs_source:
            source = None
        elif source is None:
            palette, source = pair_with_image(palette, to_uint8(image))
        target_input, source_input = palette_to_net(palette, source)
        targets.append(target_input)
        source_inputs.append(source_input)
        pairs.append((source, palette))
    palette = torch.stack(targets).to(device)
    source_palette = torch.stack(source_inputs).to(device) if model.needs_source else None
    rgb = torch.as_tensor(np.stack(images), device=device)
    lab = rgb_to_lab(rgb)  # float32 outside autocast: the source L is passed through as is
    with torch.autocast(device.type, dtype=torch.float16, enabled=half):
        lab = predict_lab(model, lab, palette, source_palette, encoded)
    for index, (source, target) in enumerate(pairs):
        if source is not None:  # the network keeps L: the palette's lightness, as chang2015
            lab[index, ..., 0] = transfer_lightness(lab[index, ..., 0], source, target)
    return list(lab_to_rgb(lab).cpu().numpy()), pairs


def follow_pairs(images, results, pairs) -> None:
    """predict's step after the network, in place in `results`: a layer colour that is a
    swatch lands on its target, and swatches left alone keep their colours
    (colormap.pin_swatches)."""
    for image, result, (source, target) in zip(images, results, pairs):
        if source is not None:
            pin_swatches(image, result, source, target)


def finish(layer: Layer, working: Working, result: np.ndarray, out: np.ndarray, pair=None):
    """Write the layer recoloured into `out` (an array shaped like the layer's pixels, whose
    contents are not read): the network's result on the working image carried to every
    pixel of the visible rectangle, mask, alpha and transparent pixels honoured, and the
    pixels outside that rectangle copied as they are. `pair`: the (source, target) LAB
    palettes the result was made for (network_outputs' pairs), so that on flat art every
    full-resolution colour of a swatch lands on its target; None, or a None source: not
    known."""
    cropped = layer.crop(*working.box)
    top, bottom, left, right = working.box

    def local():
        if working.direct:
            return lambda rgb1, row: result[row : row + len(rgb1)]
        return AffineField(
            fit_local_affine(working.rgb, result - working.rgb, working.weight),
            cropped.height,
            cropped.width,
        )

    # Flat art: one global colour mapping; other layers the local transfer, fills kept flat.
    transform = full_resolution_transform(
        cropped, working.rgb, result, working.weight, local, working.flat_art, pair
    )
    copy_outside(layer.pixels, out, working.box)
    target = out[top:bottom, left:right]
    # A mapping of colours alone (flat art) maps each distinct colour once where it can.
    if isinstance(transform, ColourMap) and cropped.map_colours(target, transform):
        return
    # The local transfer on an 8-bit layer: one compiled pass (the same result, a third of
    # the time).
    local_transfer = isinstance(transform, FillKeeper) and isinstance(
        transform.transform, AffineField
    )
    if local_transfer and affine_u8.applies(cropped):
        affine_u8.recolor_into(cropped, target, transform.transform, transform.exact)
        return
    cropped.recolor_into(target, transform)


def shared_colour_map(
    model: PaletteNet,
    working: Working,
    palette_lab,
    source_lab=None,
    half=False,
    encoded: EncodedImage | None = None,
) -> ColourMap:
    """One colour mapping for many pieces: the network's result on `working` (prepare() of
    a reference image of all the pieces, e.g. side by side) as a global colour mapping
    (colormap.ColourMap: one colour gives one colour, wherever and in whichever piece it
    is). palette_lab (n, 3) LAB, source_lab and `encoded` (the working image's encoding,
    if kept) as for `predict`.

    The price of one mapping for all: the network's local variation (a colour recoloured
    differently in the sky and in the sea of one photo) is averaged into the mapping, so a
    single photo is better recoloured on its own (finish)."""
    (result,), (pair,) = predict_with_pairs(
        model, [working.rgb], [palette_lab], half, [source_lab], encoded
    )
    return ColourMap(working.rgb, result, working.weight, pair)


def finish_mapped(layer: Layer, colour_map: ColourMap, out: np.ndarray) -> None:
    """Write the layer recoloured by a shared colour mapping (shared_colour_map) into `out`
    (shaped like the layer's pixels, contents not read): every visible pixel mapped by
    colour, mask, alpha and transparent pixels honoured, pixels outside the visible
    rectangle copied as they are."""
    box = layer.visible_box()
    if box is None:
        out[...] = layer.pixels
        return
    top, bottom, left, right = box
    cropped = layer.crop(*box)
    copy_outside(layer.pixels, out, box)
    target = out[top:bottom, left:right]
    if not cropped.map_colours(target, colour_map):
        cropped.recolor_into(target, colour_map)


def copy_outside(pixels: np.ndarray, out: np.ndarray, box) -> None:
    """Copy the pixels outside the rectangle box = (top, bottom, left, right) into out."""
    top, bottom, left, right = box
    out[:top] = pixels[:top]
    out[bottom:] = pixels[bottom:]
    out[top:bottom, :left] = pixels[top:bottom, :left]
    out[top:bottom, right:] = pixels[top:bottom, right:]


def recolor_layer(
    model: PaletteNet, layer: Layer, palette_lab, half=False, source_lab=None
) -> np.ndarray:
    """A layer recoloured to a palette ((n, 3) LAB): new pixels in the layer's format."""
    working = prepare(layer)
    if working is None:
        return layer.pixels.copy()
    out = np.empty(layer.pixels.shape, layer.pixels.dtype)
    (result,), (pair,) = predict_with_pairs(model, [working.rgb], [palette_lab], half, [source_lab])
    finish(layer, working, result, out, pair)
    return out
