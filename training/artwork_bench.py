"""Benchmark B4: recolouring artwork (and photos) as artists do, measured without truth.

    python -m training evaluate --artwork DIR --artwork-split FILE [--artwork DIR2 ...]
                                [--palettes designer.json] [--checkpoint FILE] [--server ADDR]

Every layer (an artwork or photo of a data folder with a SOURCES.tsv, see
training/artwork_data.py, read at FULL resolution as RGBA8 with its transparency) gets four
edits, the way an artist makes them in the plug-in:

    designer      a designer palette (--palettes), sent without source colours: the daemon
                  pairs it with the layer's palette by lightness (the plug-in's "apply
                  palette")
    one-swatch    the layer's own palette (the `palette` op, 6 colours) with one swatch moved
                  (hue 30..180 degrees, chroma x0.6..1.5; near-greys get chroma)
    multi-swatch  the same with three to six swatches moved (training.variants)
    hue-shift     every swatch of the layer's palette turned by the same HSV hue turn
                  (20..340 degrees), lightness kept

and every method recolours it through the palettenet/1 protocol: in this process with the
daemon's own Engine, or through a running daemon (--server ADDRESS), exactly as the plug-in
asks. A few synthetic layers are added to the artwork (kind "synthetic"): the issue's black
strokes on transparency and flat one-colour layers with the issue's palettes, and smooth
linear and radial gradients. The cases are seeded by (--seed, file name, case), so a layer's
cases do not depend on which other layers run.

The measures are training.artwork_measures (definitions there); each case gives one number
per measure, a table shows their mean per kind, and the bars of issue 17 are checked on the
whole artwork set (photos only for the shadow slope): on the mean over cases, except fills
broken (the share of all flat fills of all cases) and swatch miss (the worst case: "every
layer colour equal to a source swatch"). The worst layers of each failing bar are listed.
"""

import csv
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from backend.core.color import lab_to_rgb_np, rgb_to_lab_np, to_uint8
from backend.core.palette import pair_with_image, to_hex
from backend.service.protocol import decode_reply, encode_request, parse_palette
from training import TrainingError
from training.artwork_data import PHOTO_KIND, is_pixel_art, load_layer, read_sources
from training.artwork_measures import (
    ColourPairs,
    GradientRegions,
    colour_growth,
    fills_broken,
    gradient_steps,
    ink_excess,
    lightness_kept,
    palette_adherence,
    shadow_slope,
    swatch_miss,
    untouched,
)
from training.evaluate import MIN_HUE_TURNS, photo_rng
from training.variants import edit_palette, hue_shift, random_multi_edits, random_one_edit

CASES = ("designer", "one-swatch", "multi-swatch", "hue-shift")
B4_METHODS = ("identity", "lab-rotation", "chang2015", "palettenet")
# lab-rotation: a reference that cannot band, every colour's a* b* turned by this angle
REFERENCE_TURN_DEGREES = 30.0
LAYER_PALETTE_SIZE = 6  # what the plug-in asks the `palette` op for
SYNTHETIC_KIND = "synthetic"
FLAT_KINDS = ("flat", "lineart", "pixelart")  # colour growth <= 1.0 on these (and pixel art)
MAX_PIXELS = 64_000_000
WORST_SHOWN = 4

# measure key -> (column title, format)
COLUMNS = {
    "fills_broken_pct": ("fills broken %", "{:.1f}"),
    "colour_growth": ("colour growth", "{:.2f}"),
    "ink_excess": ("ink excess", "{:.1f}"),
    "palette_adherence": ("adherence", "{:.1f}"),
    "untouched": ("untouched", "{:.2f}"),
    "swatch_miss": ("swatch miss", "{:.1f}"),
    "gradient_steps": ("grad steps", "{:.2f}"),
    "lightness_kept": ("L kept", "{:.1f}"),
    "shadow_slope": ("shadow slope", "{:.2f}"),
    "ms": ("ms/case", "{:.0f}"),
}


# --- layers -------------------------------------------------------------------------------
@dataclass
class Artwork:
    name: str
    kind: str
    rgba: np.ndarray  # uint8 (H, W, 4)
    pixel_art: bool = False
    designer: list | None = None  # a fixed designer palette (hex), for synthetic layers

    @property
    def photo(self) -> bool:
        return self.kind == PHOTO_KIND


def list_artwork(folder, split_file=None, split="test", limit=None) -> list[tuple[Path, dict]]:
    """(path, SOURCES.tsv row) of the files of a data folder in a split (all without a split
    file), in name order; the first `limit`."""
    from training.evaluate import list_images

    rows = {row["file"]: row for row in read_sources(folder)}
    paths = list_images(folder, split_file, split, None)
    missing = [p.name for p in paths if p.name not in rows]
    if missing:
        raise TrainingError(f"{folder}/SOURCES.tsv has no row for {missing[0]}")
    return [(p, rows[p.name]) for p in paths][:limit]


def synthetic_layers() -> list[Artwork]:
    """The issue's failure cases as layers: black strokes on transparency with a six-colour
    palette, flat one-colour layers with a three-colour one, and smooth gradients."""
    six = ["#0b1d51", "#725ac1", "#f7ece1", "#e0b1cb", "#cac4ce", "#8d86c9"]
    three = ["#0b1d51", "#725ac1", "#f7ece1"]
    layers = []
    strokes = np.zeros((256, 256, 4), np.uint8)
    for i in range(8):  # black strokes, opaque, on a transparent layer
        strokes[20 + 28 * i : 26 + 28 * i, 16:240] = (0, 0, 0, 255)
        strokes[16:240, 20 + 28 * i : 24 + 28 * i] = (0, 0, 0, 255)
    layers.append(Artwork("strokes-on-transparency", SYNTHETIC_KIND, strokes, designer=six))
    for name, colour in (("black", 0), ("white", 255), ("grey", 128), ("red", (200, 20, 30))):
        flat = np.zeros((64, 64, 4), np.uint8)
        flat[..., :3], flat[..., 3] = colour, 255
        layers.append(Artwork(f"flat-{name}", SYNTHETIC_KIND, flat, designer=three))
    y, x = np.mgrid[0:384, 0:512] / np.array([383, 511])[:, None, None]
    for name, ramp in (("linear", x), ("radial", np.clip(np.hypot(x - 0.5, y - 0.5) * 1.6, 0, 1))):
        sky, cloud = np.array([60.0, -5, -45]), np.array([92.0, 0, -8])
        lab = sky + ramp[..., None] * (cloud - sky)
        rgba = np.full((384, 512, 4), 255, np.uint8)
        rgba[..., :3] = to_uint8(lab_to_rgb_np(lab))
        layers.append(Artwork(f"gradient-{name}", SYNTHETIC_KIND, rgba, designer=six))
    return layers


# --- recolouring through the protocol -----------------------------------------------------
class Recolourer:
    """The palettenet/1 requests the plug-in makes: to the daemon's Engine in this process,
    or to a running daemon at `server` (backend.service.client)."""

    def __init__(self, weights=None, server=None, device="cpu", timeout_s=600.0):
        self.server = server
        if server:
            from backend.service.client import AddressError, Client

            try:
                self.client = Client(server, timeout_s)
            except AddressError as error:
                raise TrainingError(f"--server: {error}") from None
        else:
            from backend import DEFAULT_WEIGHTS
            from backend.service.engine import Engine

            self.engine = Engine(weights or DEFAULT_WEIGHTS, device, load_model=weights is not None)

    def call(self, header: dict, rgba: np.ndarray) -> tuple[dict, list]:
        height, width = rgba.shape[:2]
        header = {"width": width, "height": height, "pixel_format": "RGBA8", **header}
        pixels = np.ascontiguousarray(rgba)
        if self.server:
            try:
                reply, frames = self.client.request(header, pixels)
            except TimeoutError as error:
                raise TrainingError(f"--server {self.server}: {error}") from None
        else:
            frames = self.engine.handle(encode_request(header, pixels), MAX_PIXELS)
            reply, frames = decode_reply(frames)
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise TrainingError(f"{header['op']}: {error.get('code')}: {error.get('message')}")
        return reply, frames

    def palette(self, rgba, k=LAYER_PALETTE_SIZE) -> list[str]:
        reply, _ = self.call({"op": "palette", "k": k}, rgba)
        return reply["palette"]

    def recolor(self, rgba, method, palette, source=None) -> np.ndarray:
        header = {"op": "recolor", "method": method, "palette": palette}
        if source is not None:
            header["source_palette"] = source
        _, frames = self.call(header, rgba)
        return np.frombuffer(frames[0], np.uint8).reshape(rgba.shape)

    def close(self):
        if self.server:
            self.client.close()


# --- cases --------------------------------------------------------------------------------
@dataclass
class Edit:
    """One palette edit of a layer: what is sent (hex), and the colours in correspondence
    (LAB source -> target) the measures use."""

    case: str
    palette: list
    source: list | None
    source_lab: np.ndarray = field(repr=False)
    target_lab: np.ndarray = field(repr=False)


def lab_of_hex(colours) -> np.ndarray:
    return rgb_to_lab_np(parse_palette(list(colours)))


def hex_of_lab(lab) -> list[str]:
    return [to_hex(rgb) for rgb in lab_to_rgb_np(np.asarray(lab))]


def make_edits(artwork: Artwork, layer_palette: list, designers: list, seed: int) -> list:
    """The four edits of a layer (CASES), seeded by (seed, layer name, case). `designers`:
    LAB palettes (evaluate.load_designer_palettes), one drawn for the designer case."""
    source_lab = lab_of_hex(layer_palette)
    edits = []
    rng = photo_rng(seed, artwork.name, "designer")
    designer = artwork.designer or hex_of_lab(designers[int(rng.integers(len(designers)))])
    rgb8, weight = artwork.rgba[..., :3], artwork.rgba[..., 3] / np.float32(255)
    target, paired = pair_with_image(lab_of_hex(designer), rgb8, weight)  # as the daemon does
    edits.append(Edit("designer", list(designer), None, paired, target))

    def moved(case, edits_of):
        changes = edits_of(source_lab, photo_rng(seed, artwork.name, case))
        new_hex = hex_of_lab(edit_palette(source_lab, changes))
        target_hex = list(layer_palette)  # the swatches not edited are sent as they came
        for index in changes:
            target_hex[index] = new_hex[index]
        return Edit(case, target_hex, list(layer_palette), source_lab, lab_of_hex(target_hex))

    edits.append(moved("one-swatch", random_one_edit))
    edits.append(moved("multi-swatch", random_multi_edits))
    turns = photo_rng(seed, artwork.name, "hue-shift").uniform(MIN_HUE_TURNS, 1 - MIN_HUE_TURNS)
    _, shifted = hue_shift(source_lab, source_lab, turns)
    shifted_hex = hex_of_lab(shifted)
    edits.append(Edit("hue-shift", shifted_hex, list(layer_palette), source_lab,
                      lab_of_hex(shifted_hex)))  # fmt: skip
    return edits


def measure(artwork: Artwork, edit: Edit, output_rgba, regions: GradientRegions) -> dict:
    """Every measure that applies to this layer and edit (see the module docstring)."""
    rgb, alpha = artwork.rgba[..., :3], artwork.rgba[..., 3]
    out = output_rgba[..., :3]
    visible = ColourPairs.of(rgb, out, alpha > 0)
    numbers = {
        "ink_excess": ink_excess(visible, edit.source_lab, edit.target_lab),
        "untouched": untouched(visible, edit.source_lab, edit.target_lab),
        "swatch_miss": swatch_miss(visible, edit.source_lab, edit.target_lab),
        "gradient_steps": gradient_steps(regions, out),
        "alpha_changed": float(np.mean(output_rgba[..., 3] != alpha)),
    }
    if edit.case == "designer":
        numbers["palette_adherence"] = palette_adherence(visible, edit.target_lab)
    if artwork.photo:
        numbers["lightness_kept"] = lightness_kept(visible)
        numbers["shadow_slope"] = shadow_slope(visible)
    else:
        broken, fills = fills_broken(ColourPairs.of(rgb, out, alpha == 255))
        numbers.update(fills_broken=broken, fills=fills, colour_growth=colour_growth(visible))
    return numbers


def lab_rotation(rgba: np.ndarray, degrees: float) -> np.ndarray:
    """The reference for the gradient-steps measure: every colour of an RGBA8 layer (H, W,
    4) with its CIELAB a* b* turned by `degrees` (lightness and chroma kept), in floating
    point, then rounded to 8 bits once; alpha kept. A rigid turn of colour space cannot
    band, so what gradient_steps gives it is the measure's floor for any hue change: the
    8-bit rounding of the output and CIEDE2000's unevenness across hues."""
    lab = rgb_to_lab_np(rgba[..., :3] / 255.0)
    turn = np.deg2rad(degrees)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1] = a * np.cos(turn) - b * np.sin(turn)
    lab[..., 2] = a * np.sin(turn) + b * np.cos(turn)
    out = rgba.copy()
    out[..., :3] = to_uint8(np.clip(lab_to_rgb_np(lab), 0, 1))
    return out


def layer_rows(artwork: Artwork, methods, recolourer: "Recolourer", designers, seed) -> list:
    """Every case of one layer with every method -> one dict per (case, method): file, kind,
    pixel_art, case, method, ms and the measures."""
    rows = []
    regions = GradientRegions.find(artwork.rgba[..., :3], artwork.rgba[..., 3] == 255)
    layer_palette = recolourer.palette(artwork.rgba)
    for edit in make_edits(artwork, layer_palette, designers, seed):
        for method in methods:
            start = time.perf_counter()
            if method == "identity":
                output = artwork.rgba.copy()
            elif method == "lab-rotation":
                output = lab_rotation(artwork.rgba, REFERENCE_TURN_DEGREES)
            else:
                output = recolourer.recolor(artwork.rgba, method, edit.palette, edit.source)
            ms = 1000 * (time.perf_counter() - start)
            row = {"file": artwork.name, "kind": artwork.kind, "pixel_art": artwork.pixel_art,
                   "case": edit.case, "method": method, "ms": ms}  # fmt: skip
            row.update(measure(artwork, edit, output, regions))
            rows.append(row)
    return rows


_WORKER = {}  # a worker process's recolourer and settings (run_b4 with workers > 1)


def _start_worker(recolourer_args, methods, designers, seed, threads):
    if threads:
        import torch

        torch.set_num_threads(threads)
    _WORKER.update(recolourer=Recolourer(*recolourer_args), methods=methods,
                   designers=designers, seed=seed)  # fmt: skip


def _worker_rows(artwork):
    w = _WORKER
    return layer_rows(artwork, w["methods"], w["recolourer"], w["designers"], w["seed"])


def run_b4(layers, methods, designers, seed=0, progress=True, recolourer_args=(), workers=1):
    """Every case of every layer (Artwork, from an iterable) with every method, the layers
    `workers` at a time in separate processes, each with its own Recolourer(*recolourer_args)
    -> one dict per (layer, case, method) (layer_rows), in the layers' order. The numbers do
    not depend on `workers` (only the times do)."""
    settings = (recolourer_args, methods, designers, seed, 1 if workers > 1 else 0)
    bar = tqdm(desc="B4", unit="layer", file=sys.stderr, disable=not progress)
    rows = []
    if workers <= 1:
        _start_worker(*settings)
        try:
            for artwork in layers:
                rows += _worker_rows(artwork)
                bar.update()
        finally:
            _WORKER.pop("recolourer").close()
    else:
        # fresh ("spawn") processes, as `prepare` uses: forking after torch started its
        # threads can hang
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, _start_worker, settings) as pool:
            for layer_result in pool.map(_worker_rows, layers):
                rows += layer_result
                bar.update()
    bar.close()
    return rows


def read_layers(folder_splits, split="test", limit=None, synthetic=True):
    """Artwork from (folder, split file or None) pairs, loaded one at a time, then the
    synthetic layers."""
    for folder, split_file in folder_splits:
        for path, row in list_artwork(folder, split_file, split, limit):
            yield Artwork(path.name, row["kind"], load_layer(path), is_pixel_art(row))
    if synthetic:
        yield from synthetic_layers()


# --- summary and bars ---------------------------------------------------------------------
def _values(rows, key):
    values = np.array([row[key] for row in rows if key in row], dtype=np.float64)
    return values[~np.isnan(values)]


def summary(rows) -> dict:
    """Aggregates of some case rows: fills broken as the pooled share of fills, the other
    measures as the mean (and 'KEY max' the largest) over the cases that have them."""
    result = {"cases": len(rows)}
    fills = sum(row.get("fills", 0) for row in rows)
    if fills:
        result["fills_broken_pct"] = 100 * sum(row.get("fills_broken", 0) for row in rows) / fills
    for key in COLUMNS:
        if key == "fills_broken_pct":
            continue
        values = _values(rows, key)
        if len(values):
            result[key], result[f"{key} max"] = float(values.mean()), float(values.max())
    return result


def in_flat_group(row) -> bool:
    return row["kind"] in FLAT_KINDS or row["pixel_art"]


@dataclass
class Bar:
    """One bar of issue 17: `key` of the summary of `rows_of(rows)` for `method`, at most
    `limit` (or at most another method's value, `than`)."""

    title: str
    key: str
    methods: tuple
    limit: float | None = None
    than: str | None = None  # compare with this method's value instead of a fixed limit
    scope: str = "artwork"  # artwork, flat (flat, line art, pixel art), photo
    statistic: str = ""  # "" for the mean (or pooled share), " max" for the worst case


BARS = [
    Bar("fills broken <= 1 %", "fills_broken_pct", ("palettenet", "chang2015"), 1.0),
    Bar("colour growth <= 1.0 (flat, line art, pixel art)", "colour_growth",
        ("palettenet", "chang2015"), 1.0, scope="flat"),
    Bar("gradient steps <= 1.5", "gradient_steps", ("palettenet", "chang2015"), 1.5),
    Bar("untouched <= 1.0 dE", "untouched", ("palettenet", "chang2015"), 1.0),
    Bar("ink excess <= 3", "ink_excess", ("palettenet", "chang2015"), 3.0),
    Bar("palette adherence: palettenet <= chang2015", "palette_adherence", ("palettenet",),
        than="chang2015"),
    Bar("swatch miss <= 1 dE, every case (chang2015)", "swatch_miss", ("chang2015",), 1.0,
        statistic=" max"),
    Bar("shadow slope <= 3 (chang2015, photos)", "shadow_slope", ("chang2015",), 3.0,
        scope="photo"),
]  # fmt: skip


def scope_rows(rows, scope):
    if scope == "photo":
        return [row for row in rows if row["kind"] == PHOTO_KIND]
    artwork = [row for row in rows if row["kind"] != PHOTO_KIND]
    return [row for row in artwork if in_flat_group(row)] if scope == "flat" else artwork


def check_bars(rows) -> list[dict]:
    """Each bar's verdict per method: value, limit, passed (None: nothing to measure), and
    the worst cases (file, case, value)."""
    verdicts = []
    for bar in BARS:
        chosen = scope_rows(rows, bar.scope)
        for method in bar.methods:
            mine = [row for row in chosen if row["method"] == method]
            value = summary(mine).get(bar.key + bar.statistic)
            limit = bar.limit
            if bar.than is not None:
                limit = summary([r for r in chosen if r["method"] == bar.than]).get(bar.key)
            passed = None if value is None or limit is None else value <= limit
            verdicts.append({"bar": bar.title, "method": method, "value": value,
                             "limit": limit, "passed": passed,
                             "worst": worst_cases(mine, bar.key)})  # fmt: skip
    return verdicts


def worst_cases(rows, key, count=WORST_SHOWN) -> list[tuple[str, str, float]]:
    if key == "fills_broken_pct":
        with_fills = [row for row in rows if row.get("fills")]
        scored = [(row, 100 * row["fills_broken"] / row["fills"]) for row in with_fills]
    else:
        scored = [(row, row[key]) for row in rows if key in row and not np.isnan(row[key])]
    scored.sort(key=lambda item: -item[1])
    return [(row["file"], row["case"], value) for row, value in scored[:count]]


def format_b4(rows, which="test split") -> str:
    """Per method, a table of the measures' means per kind (and over all artwork), then the
    bars with pass/fail and the worst cases of each failing bar; `which`: the layers'
    split, for the bars' title."""
    lines = ["B4 artwork: layers at full size, recoloured as the plug-in asks (mean per case;"
             " fills broken: share of all flat fills)"]  # fmt: skip
    kinds = sorted({row["kind"] for row in rows}, key=lambda k: (k == PHOTO_KIND, k))
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        groups = [(kind, [r for r in mine if r["kind"] == kind]) for kind in kinds]
        artwork = scope_rows(mine, "artwork")
        if artwork and len(kinds) > 1:
            groups.append(("all artwork", artwork))
        table = [["kind", "cases"] + [title for title, _ in COLUMNS.values()]]
        for name, members in groups:
            numbers = summary(members)
            cells = [name, str(numbers["cases"])]
            cells += [form.format(numbers[key]) if key in numbers else "-"
                      for key, (_, form) in COLUMNS.items()]  # fmt: skip
            table.append(cells)
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        lines.append(f"  {method}")
        for line in table:
            lines.append("  " + "  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    lines.append("")
    lines.append(f"B4 bars (issue 17), {which}")
    for verdict in check_bars(rows):
        if verdict["passed"] is None:
            state, detail = "n/a ", "nothing to measure"
        else:
            state = "pass" if verdict["passed"] else "FAIL"
            detail = f"{verdict['value']:.2f} (bar {verdict['limit']:.2f})"
        lines.append(f"  {state}  {verdict['method']:<10}  {verdict['bar']}: {detail}")
        if verdict["passed"] is False:
            worst = ", ".join(f"{f} [{c}] {v:.2f}" for f, c, v in verdict["worst"])
            lines.append(f"          worst: {worst}")
    return "\n".join(lines) + "\n"


def write_b4_csv(rows, path):
    """One line per (layer, case, method) with every measure."""
    keys = ["file", "kind", "pixel_art", "case", "method", "ms", "fills_broken", "fills"]
    keys += [k for k in COLUMNS if k not in keys and k != "fills_broken_pct"] + ["alpha_changed"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(value) for key, value in row.items()})


def _cell(value):
    """A CSV cell: floats with four decimals, NaN (not measurable) empty."""
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4f}"
    return value
