"""An animated layer in a wide-gamut profile (mock Krita that converts with LittleCMS, real
daemon): every frame goes as Krita stores it, with its ICC profile and the frames' shared
reference, and is recoloured alike (qa-gamut could not drive this in the real window)."""

import base64
import json

import numpy as np
from test_plugin_krita_mock import spy_on_requests, wide_gamut_setup

FRAME_TIMES = (0, 4, 9)


def test_an_animated_wide_gamut_layer_is_recoloured_alike_with_its_profile(
    daemon, tmp_path, monkeypatch
):
    setup, layer, profile = wide_gamut_setup(daemon, tmp_path, monkeypatch, "U16")
    still = layer.pixels.copy()  # a gradient (B, G, R, A in U16); each frame shifts it
    layer.make_animated({t: np.roll(still, 3 * t, axis=1) for t in FRAME_TIMES})
    setup.document.time = 4
    sent = spy_on_requests(monkeypatch)
    setup.open()
    assert "3 frames" in setup.view.statuses[-1][1], setup.view.statuses
    setup.controller.set_target_color(2, "#ff8800")
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    assert setup.view.status[0] == "info" and "3 frames" in setup.view.status[1], setup.view.status

    applies = [f for f in sent if json.loads(f[0])["op"] == "recolor"
               and "options" not in json.loads(f[0])]  # fmt: skip
    assert len(applies) == 3
    for frames in applies:
        header = json.loads(frames[0])
        assert header["pixel_format"] == "BGRA16" and "reference" in header
        assert base64.b64decode(header["icc_profile"]) == profile
    copy = setup.document.root.children[-1]
    assert copy.animated() and sorted(copy.frames) == list(FRAME_TIMES)
    for time in FRAME_TIMES:
        original, result = layer.frames[time], copy.frames[time]
        assert np.array_equal(original, np.roll(still, 3 * time, axis=1))  # untouched
        assert result.dtype == original.dtype and not np.array_equal(result, original)
        assert np.array_equal(result[..., 3], original[..., 3])
    # one colour, one result in every frame: the frames are the same picture shifted
    shifted = {t: np.roll(copy.frames[t], -3 * t, axis=1) for t in FRAME_TIMES}
    inside = slice(27, None)  # columns that no frame's shift wrapped around
    for time in FRAME_TIMES[1:]:
        assert np.array_equal(shifted[time][:, inside], shifted[0][:, inside])
    assert setup.document.currentTime() == 4


def test_a_profile_the_daemon_refuses_falls_back_to_kritas_conversion(
    daemon, tmp_path, monkeypatch
):
    """A profile Krita knows but the daemon's LittleCMS refuses (here a degenerate tone
    curve, gamma 0): Apply does not end in an error; Krita converts the layer to linear
    sRGB itself and the result is added, as for a profile whose bytes cannot be found
    (qa-gamut F5)."""
    import imagecodecs

    setup, layer, _ = wide_gamut_setup(daemon, tmp_path, monkeypatch, "U16", "export")
    degenerate = imagecodecs.cms_profile("rgb", whitepoint=(0.3127, 0.329),
                                         primaries=(0.64, 0.33, 0.3, 0.6, 0.15, 0.06),
                                         gamma=0.0)  # fmt: skip
    name = layer.colorProfile()
    setup.app.icc_profiles[name] = degenerate  # what Krita's export now gives for it
    sent = spy_on_requests(monkeypatch)
    setup.open()
    setup.controller.set_target_color(0, "#ff8800")  # Krita shows it one colour
    setup.runner.run()
    setup.controller.apply()
    setup.runner.run()
    assert setup.view.status[1].startswith("Added layer"), setup.view.statuses
    applies = [json.loads(f[0]) for f in sent if json.loads(f[0])["op"] == "recolor"
               and "options" not in json.loads(f[0])]  # fmt: skip
    assert [h.get("icc_profile") is not None for h in applies] == [True, False]
    assert applies[1]["pixel_format"] == "RGBAF16_LINEAR"  # Krita's conversion
    result = setup.document.root.children[-1]
    assert result.pixels.dtype == layer.pixels.dtype
    assert np.array_equal(result.pixels[..., 3], layer.pixels[..., 3])
