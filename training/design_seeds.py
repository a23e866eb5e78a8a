"""Split a Design-Seeds composite into its photo and its six-colour palette.

A Design-Seeds image is a photo with a palette strip attached: six flat colour swatches stacked
down the right side (or side by side along the bottom), usually set off from the photo and from
each other by thin gaps of a uniform colour (white in practice). This module finds the strip,
crops the photo out without the strip and the gap, and reads the six swatch colours.

How (for a right strip; a bottom strip is the same problem on the transposed image):
1. A column through the swatches is piecewise constant, a few flat runs with sharp edges,
   while a column through a photo has texture (many edges) or gradients (runs that drift).
   Scanning the outer half of the image that way, the right-most block of flat columns that
   also change colour along their length is the swatch band.
2. The median across the band's central columns is one clean profile along the strip; the
   band is grown sideways over columns that follow it (JPEG ringing can spoil their flatness).
3. Beyond the band there may only be a uniform margin. Towards the photo, columns that are
   mostly one colour are the gap; the photo ends where they stop.
4. The profile is cut into flat runs: the six long ones are the swatches (each read as the
   median of its central area), the short ones separators, long runs in the gap colour at
   the ends a margin. An outer frame in the gap colour is trimmed off the photo too.

Limits (documented, not handled):
- the strip must touch the image edge (a uniform outer margin around it is fine) and take at
  most half the image width (height);
- two neighbouring swatches of the same colour with no separator between them read as one,
  and a swatch in the gap colour at the end of the strip merges with a long end margin;
- photo columns (rows) next to the strip that are themselves almost all one colour (a plain
  studio background, a blown-out sky in the gap colour) are taken as gap or frame and cropped;
- JPEG below about quality 85 may leave a blended column or two of gap on the photo;
- swatches must be roughly equal in length (within a factor of three) and cover a good part of
  the strip's length, which is what rejects flat graphics that merely look like a strip.
"""

import numpy as np

N_SWATCHES = 6
# 8-bit levels: the largest step between neighbouring pixels still counted as "the same flat
# area". JPEG keeps flat areas flat; its ringing near edges breaks runs only for a few pixels.
STEP_TOL = 6
# 8-bit levels: standard deviation of R+G+B a flat run may have. Photo gradients (a sky) pass
# STEP_TOL pixel by pixel but drift far more than this over the run.
RUN_STD_TOL = 6.0
# Pixels: stable stretches shorter than this are JPEG ringing at an edge, not flat areas.
MIN_RUN = 3
# Edges along one line: six swatches with separators and margins give about 14, JPEG ringing
# can split an edge in two or three; photo lines have far more.
MAX_TRANSITIONS = 30
# Share of a line that must lie in good flat runs for it to count as part of the strip.
MIN_FLAT_FRACTION = 0.6
# The strip never takes more than this share of the image width (height for a bottom strip);
# searching only there keeps the work small.
MAX_STRIP_FRACTION = 0.5
# Pixels: along the strip profile a pixel must match its neighbours this far away to be stable.
PROFILE_REACH = 3
# Columns scanned for flatness: every SCAN_STRIDE-th, at least MIN_BAND of them side by side.
SCAN_STRIDE = 2
MIN_BAND = 2
# 8-bit levels: two flat runs this close in colour, with nothing unlike them between, are one.
MERGE_TOL = 10.0
# 8-bit levels: colour distance under which a run or column "is" the gap/background colour.
BACKGROUND_TOL = 24.0
# 8-bit levels (standard deviation along a column, largest channel): above it a flat column
# changes colour along its length, i.e. crosses swatches; gap and margin columns stay below.
VARYING_SPREAD = 12.0
# Share of a column within BACKGROUND_TOL of its median for it to count as uniform gap/margin.
UNIFORM_SHARE = 0.9
# Pixels: JPEG (chroma subsampling) blends a column or two at each edge between regions.
BLEND_COLUMNS = 2
# Pixels: JPEG blurs the photo's last column or two into the gap; trim at most this many
# columns that are at least BLEND_SHARE gap-coloured.
MAX_GAP_TRIM = 3
BLEND_SHARE = 0.75
# Pixels: a "photo" narrower than this next to the strip is not a photo.
MIN_PHOTO = 8
# Pixels: smallest height and width of a composite worth searching.
MIN_SIZE = 16
# Share of the photo's height (width) an outer frame may take from one side at most.
MAX_FRAME = 0.25


class LayoutError(ValueError):
    """The image does not look like a photo with a six-swatch palette strip."""


class _NoStrip(Exception):
    """One orientation failed; the message says why (collected into the LayoutError)."""


def _steps_calm(lines: np.ndarray) -> np.ndarray:
    """(L-1, ...) bool: neighbour steps along axis 0 of at most STEP_TOL in every channel."""
    step = np.abs(np.diff(lines, axis=0))
    # Elementwise maxima: reducing over a length-3 last axis is several times slower.
    return np.maximum(np.maximum(step[..., 0], step[..., 1]), step[..., 2]) <= STEP_TOL


def _stable_mask(lines: np.ndarray) -> np.ndarray:
    """(L, n) bool: pixels whose steps to both neighbours along axis 0 are at most STEP_TOL."""
    calm = _steps_calm(lines)
    stable = np.ones(lines.shape[:2], dtype=bool)
    stable[:-1] &= calm
    stable[1:] &= calm
    return stable


def _flat_columns(region: np.ndarray) -> np.ndarray:
    """(w,) bool: which columns of an (H, w, 3) region are piecewise constant along their length.

    All columns at once: every stable stretch gets its own label (a cumulative count of the
    unstable pixels before it, offset per column), and per-label sums via bincount give each
    run's length and variance without a Python loop. The variance is taken of the channel sum:
    a photo gradient moves it as much as it moves any one channel, at a third of the cost.
    """
    values = region.astype(np.int16)
    height, width = values.shape[:2]
    stable = _stable_mask(values)
    unstable = ~stable
    labels = np.cumsum(unstable, axis=0, dtype=np.int32)
    labels += (np.arange(width) * (height + 1)).astype(np.int32)
    index = labels[stable]
    # Channel sum by explicit adds: a reduction over the length-3 axis is far slower.
    brightness = (values[..., 0] + values[..., 1] + values[..., 2])[stable].astype(np.float64)
    n_bins = width * (height + 1)
    count = np.bincount(index, minlength=n_bins)
    safe = np.maximum(count, 1)
    mean = np.bincount(index, brightness, n_bins) / safe
    variance = np.bincount(index, brightness**2, n_bins) / safe - mean**2
    good_run = (count >= MIN_RUN) & (variance <= RUN_STD_TOL**2)
    good_pixels = np.count_nonzero(good_run[labels] & stable, axis=0)
    # Count edges as the starts of unstable stretches: texture makes many of them.
    transitions = unstable[0] + np.count_nonzero(unstable[1:] & ~unstable[:-1], axis=0)
    return (good_pixels >= MIN_FLAT_FRACTION * height) & (transitions <= MAX_TRANSITIONS)


def _profile_runs(profile: np.ndarray) -> list[list]:
    """Cut an (L, 3) colour profile into flat runs: [start, end, median colour] each.

    A pixel is stable when it matches its neighbours up to PROFILE_REACH pixels away, so a soft
    edge between two similar swatches (JPEG chroma blur spreads it over a few pixels in
    steps smaller than STEP_TOL) still breaks the run.
    Neighbouring runs of the same colour are joined when what lies between them is that colour
    too (a noise spike inside one swatch), but not across a separator of another colour, so
    two equal swatches with a separator stay two.
    """
    length = len(profile)
    stable = np.ones(length, dtype=bool)
    for reach in range(1, min(PROFILE_REACH, length - 1) + 1):
        calm = np.abs(profile[reach:] - profile[:-reach]).max(axis=1) <= STEP_TOL
        stable[:-reach] &= calm
        stable[reach:] &= calm
    edges = np.diff(np.concatenate([[0], stable.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) > 20 * N_SWATCHES:
        raise _NoStrip(f"the strip profile has {len(starts)} flat pieces, not a swatch strip")
    runs: list[list] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        colour = np.median(profile[start:end], axis=0)
        if runs:
            previous = runs[-1]
            between = profile[previous[1] : start]
            middle = (previous[2] + colour) / 2
            if np.abs(previous[2] - colour).max() <= MERGE_TOL and (
                between.size == 0 or np.abs(between - middle).max() <= MERGE_TOL
            ):
                previous[1] = end
                previous[2] = np.median(profile[previous[0] : end], axis=0)
                continue
        runs.append([start, end, colour])
    return [run for run in runs if run[1] - run[0] >= MIN_RUN]


def _near(colour: np.ndarray, reference: np.ndarray | None) -> bool:
    return reference is not None and float(np.abs(colour - reference).max()) <= BACKGROUND_TOL


def _pick_swatches(runs: list[list], length: int, background: np.ndarray | None) -> list[list]:
    """The six swatch runs among the profile's runs, or _NoStrip saying what was seen."""
    if len(runs) < N_SWATCHES:
        raise _NoStrip(f"found {len(runs)} flat colour areas along the strip, expected 6")
    lengths = np.array([end - start for start, end, _ in runs])
    typical = np.median(np.sort(lengths)[::-1][:N_SWATCHES])
    # Swatches are the long runs; separators (and ringing leftovers) are much shorter.
    swatches = [run for run, size in zip(runs, lengths, strict=True) if size >= 0.5 * typical]
    short = [run for run, size in zip(runs, lengths, strict=True) if size < 0.5 * typical]
    if background is None and short:
        # No gap columns to learn the background from: the separators show it.
        background = np.median(np.array([run[2] for run in short]), axis=0)
    # Long runs at the ends in the background colour are margins framing the swatches; when
    # both ends qualify, drop the one whose length fits the other swatches worst.
    while len(swatches) > N_SWATCHES:
        ends = [i for i in (0, len(swatches) - 1) if _near(swatches[i][2], background)]
        if not ends:
            break
        inner = np.median([end - start for start, end, _ in swatches[1:-1]])
        worst = max(ends, key=lambda i: abs(swatches[i][1] - swatches[i][0] - inner))
        swatches.pop(worst)
    if len(swatches) != N_SWATCHES:
        raise _NoStrip(f"found {len(swatches)} swatch-sized colour areas, expected 6")
    sizes = np.array([end - start for start, end, _ in swatches])
    if sizes.max() > 3 * sizes.min():
        raise _NoStrip(f"swatch lengths differ too much ({sizes.min()} to {sizes.max()} px)")
    if sizes.sum() < 0.4 * length:
        raise _NoStrip("the six flat areas cover too little of the strip to be swatches")
    return swatches


def _trim_frame(photo: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Remove outer rows/columns in the frame colour (a border around the whole composite).

    A line is frame when it is mostly that colour (the test the gap uses), then up to
    MAX_GAP_TRIM lines that JPEG blended with the photo go too. Line by line from each side, so
    a photo without a frame costs a few line checks; at most MAX_FRAME of a side goes.
    """

    def share(line: np.ndarray) -> float:
        return float(
            (np.abs(line.astype(np.float64) - colour).max(axis=1) <= BACKGROUND_TOL).mean()
        )

    def inward(lines) -> int:
        """How many of the lines (outermost first) to cut."""
        cut = 0
        limit = int(MAX_FRAME * len(lines))
        while cut < limit and share(lines[cut]) >= UNIFORM_SHARE:
            cut += 1
        if cut:
            for _ in range(MAX_GAP_TRIM):
                if cut >= limit or share(lines[cut]) < BLEND_SHARE:
                    break
                cut += 1
        return cut

    top = inward(photo)
    bottom = photo.shape[0] - inward(photo[::-1])
    photo = photo[top:bottom]
    columns = photo.transpose(1, 0, 2)
    left = inward(columns)
    right = photo.shape[1] - inward(columns[::-1])
    return photo[:, left:right]


def _uniform_column(column: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether an (H, 3) column is (nearly all) one colour, and that colour (its median)."""
    colour = np.median(column, axis=0)
    close = np.abs(column.astype(np.float64) - colour).max(axis=1) <= BACKGROUND_TOL
    return bool(close.mean() >= UNIFORM_SHARE), colour


def _follows(column: np.ndarray, profile: np.ndarray) -> bool:
    """Whether an (H, 3) column mostly matches the strip's (H, 3) profile."""
    close = np.abs(column.astype(np.float64) - profile).max(axis=1) <= BACKGROUND_TOL
    return bool(close.mean() >= UNIFORM_SHARE)


def _split_right(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(photo, palette 0..1, size spread) for a strip on the right edge, or _NoStrip."""
    height, width = image.shape[:2]
    # Search the outer part only, every SCAN_STRIDE-th column: the band found there is grown
    # back column by column below, so the coarse scan loses no precision. The strided slice
    # also copies the data contiguously (a bottom strip arrives as a slow transposed view).
    search_from = width - max(SCAN_STRIDE, int(width * MAX_STRIP_FRACTION))
    region = np.ascontiguousarray(image[:, search_from::SCAN_STRIDE])

    # Swatch band: flat columns that change colour along their length. The right-most such
    # block (ignoring slivers, e.g. a blended column) is the strip. Every 4th pixel is plenty
    # to see a column change colour.
    spread = region[::4].std(axis=0).max(axis=1)
    swatchy = _flat_columns(region) & (spread > VARYING_SPREAD)
    if not swatchy.any():
        raise _NoStrip("no line near the edge is a flat run of colour swatches")
    edges = np.diff(np.concatenate([[0], swatchy.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if (ends - starts).max() < MIN_BAND:
        raise _NoStrip("the swatch-like lines near the edge are too thin to be a strip")
    wide = np.flatnonzero(ends - starts >= max(MIN_BAND, 0.25 * (ends - starts).max()))
    band_from = search_from + SCAN_STRIDE * int(starts[wide[-1]])
    band_to = search_from + SCAN_STRIDE * (int(ends[wide[-1]]) - 1) + 1
    # One clean profile along the strip: the median across the band's central columns.
    quarter = (band_to - band_from) // 4
    centre = slice(band_from + quarter, max(band_from + quarter + 1, band_to - quarter))
    profile = np.median(image[:, centre].astype(np.float64), axis=1)

    # JPEG ringing (from the photo, or at any strong edge) can spoil the flatness of columns at
    # the band's sides: widen the band over columns that still mostly follow its profile.
    while band_from > 0 and _follows(image[:, band_from - 1], profile):
        band_from -= 1
    while band_to < width and _follows(image[:, band_to], profile):
        band_to += 1

    # Whatever lies beyond the band must be a uniform margin (after a column or two that JPEG
    # blends with the swatches); otherwise these swatch-like lines are inside the photo.
    margin = None
    for x in range(band_to + BLEND_COLUMNS, width):
        uniform, colour = _uniform_column(image[:, x])
        if not uniform:
            raise _NoStrip("the swatch-like lines are not at the edge (photo content beyond)")
        margin = colour if margin is None else margin

    # Gap: walk towards the photo over uniform columns of one colour, allowing a blended column
    # or two next to the band. Ringing from the photo keeps the gap off perfectly flat, which is
    # why this uses "mostly one colour" instead of the flatness test.
    photo_to = band_from
    gap = None
    for x in range(band_from - 1, -1, -1):
        uniform, colour = _uniform_column(image[:, x])
        if uniform and (gap is None or _near(colour, gap)):
            gap = colour if gap is None else gap
            photo_to = x
        elif gap is None and band_from - x <= BLEND_COLUMNS:
            continue
        else:
            break
    if photo_to < MIN_PHOTO:
        raise _NoStrip("nothing but flat colour next to the strip: no photo")
    background = gap if gap is not None else margin

    swatches = _pick_swatches(_profile_runs(profile), height, background)
    palette = np.empty((N_SWATCHES, 3))
    for i, (start, end, _) in enumerate(swatches):
        # The swatch's central area keeps clear of edge blur and JPEG ringing.
        inset = (end - start) // 4
        area = image[start + inset : end - inset, centre].reshape(-1, 3)
        palette[i] = np.median(area, axis=0) / 255.0

    photo = image[:, :photo_to]
    if gap is not None:
        # JPEG smears the photo's edge into the gap: drop up to a few mostly-gap columns.
        for _ in range(MAX_GAP_TRIM):
            close = np.abs(photo[:, -1].astype(np.float64) - gap).max(axis=1) <= BACKGROUND_TOL
            if photo.shape[1] <= MIN_PHOTO or close.mean() < BLEND_SHARE:
                break
            photo = photo[:, :-1]
    if background is not None:
        photo = _trim_frame(photo, background)
    sizes = np.array([end - start for start, end, _ in swatches])
    return photo, palette, float(sizes.std() / sizes.mean())


def split_design_seeds(rgb8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB (H, W, 3) composite -> (photo uint8 RGB cropped without the strip and without
    the separating gap, palette (6, 3) float RGB in 0..1 in strip order: top-to-bottom or
    left-to-right).

    Raises LayoutError when neither a right nor a bottom six-swatch strip is found.
    """
    image = np.asarray(rgb8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise LayoutError(f"expected a uint8 RGB (H, W, 3) image, got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < MIN_SIZE:
        raise LayoutError(
            f"image {image.shape[1]}x{image.shape[0]} is too small for a photo and strip"
        )
    found = []
    reasons = []
    # A bottom strip is a right strip of the transposed image; swatches then run left to right.
    for side, view in (("right", image), ("bottom", image.transpose(1, 0, 2))):
        try:
            photo, palette, spread = _split_right(view)
        except _NoStrip as why:
            reasons.append(f"{side} edge: {why}")
            continue
        if side == "bottom":
            photo = photo.transpose(1, 0, 2)
        found.append((spread, np.ascontiguousarray(photo), palette))
    if not found:
        raise LayoutError(
            "no six-swatch palette strip found on the right or bottom edge ("
            + "; ".join(reasons)
            + ")"
        )
    # Both edges passing is rare; the one with the more even swatch sizes is the real strip.
    _, photo, palette = min(found, key=lambda item: item[0])
    return photo, palette
