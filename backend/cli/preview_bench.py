"""`palettenet bench --preview`: the live preview's latency, as the plug-ins see it.

A daemon is started; one preview-size layer (long side --preview-side, 512 by default, sent
as a 1024-pixel thumbnail as the Krita docker does) gets a palette request, then 30
successive palette changes in which one swatch is dragged round the hue circle, each sent
when the previous answer came back (what a plug-in that only ever sends the newest palette
does). Printed per method: the first answer (nothing cached) and p50 / p95 / max of the 30.
"""

import colorsys
import time

import numpy as np

CHANGES = 30
THUMBNAIL_SIDE = 1024


def dragged_palettes(source: list[str], swatch: int, count: int = CHANGES) -> list[list[str]]:
    """`count` palettes: `source` with swatch `swatch` turned round the hue circle in
    equal steps (saturation and value kept, at least 0.5 saturation so the hue shows)."""
    red, green, blue = (int(source[swatch][i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, saturation, value = colorsys.rgb_to_hsv(red, green, blue)
    palettes = []
    for step in range(1, count + 1):
        turned = colorsys.hsv_to_rgb((hue + step / count) % 1, max(saturation, 0.5), value)
        colour = "#" + "".join(f"{round(c * 255):02x}" for c in turned)
        palettes.append(source[:swatch] + [colour] + source[swatch + 1 :])
    return palettes


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(np.asarray(values), share))


def run_preview_bench(args, address: str, pixels: np.ndarray) -> None:
    """Print the preview latency table for every method in args.methods, through the
    daemon at `address`, for `pixels` (RGBA8 (H, W, 4))."""
    from backend.service.client import Client

    client = Client(address, timeout_s=600)
    height, width = pixels.shape[:2]
    layer = {"width": width, "height": height, "pixel_format": "RGBA8"}
    reply, _ = client.request({"op": "palette", "id": "p", "k": 6, **layer}, pixels)
    source = reply["palette"]
    palettes = dragged_palettes(source, swatch=min(3, len(source) - 1))
    side = args.preview_side
    print(f"live preview: {width} x {height} RGBA8 layer, previews of long side {side}, "
          f"{CHANGES} successive palette changes (one swatch dragged), via the daemon")  # fmt: skip
    print(f"{'method':<12}{'first (ms)':>12}{'p50 (ms)':>10}{'p95 (ms)':>10}{'max (ms)':>10}")
    for method in args.methods:
        times = []
        for index, palette in enumerate([source[::-1]] + palettes):
            header = {"op": "recolor", "id": f"{method}-{index}", "method": method,
                      "palette": palette, "source_palette": source,
                      "options": {"max_side": side}, **layer}  # fmt: skip
            start = time.perf_counter()
            reply, _ = client.request(header, pixels)
            times.append((time.perf_counter() - start) * 1000)
            if not reply.get("ok"):
                raise SystemExit(f"bench: {reply.get('error')}")
        first, dragged = times[0], times[1:]
        print(f"{method:<12}{first:>12.0f}{percentile(dragged, 50):>10.0f}"
              f"{percentile(dragged, 95):>10.0f}{max(dragged):>10.0f}")  # fmt: skip
    client.close()
