"""The Krita docker's poll while Apply runs (mock Krita, real daemon)."""

import numpy as np
from krita_mock import Document
from test_plugin_krita_mock import Setup, chang_setup

from plugin.recolor_with_palette.controller import JobContext


def test_the_poll_reads_no_frames_while_they_are_applied(daemon, tmp_path):
    """Apply moves the playhead from frame to frame (libkis 5.1 writes at the current time
    only); the 0.7 s poll saw new content at each move and read every keyframe again and
    asked the daemon for their palette, slowing the Apply it was watching. It now waits
    for Apply to end, then follows the new layer quietly."""
    document = Document(32, 24)
    walk = document.add_layer("Walk")
    walk.make_animated({t: np.full((24, 32, 4), (30 + 40 * t, 90, 160, 255), np.uint8)
                        for t in (0, 1, 2)})  # fmt: skip
    document.time = 1
    setup = chang_setup(Setup(daemon, tmp_path, document))
    setup.open()
    setup.controller.set_target_color(0, "#ff0000")
    setup.runner.run()
    thumbnail, reads = setup.editor.thumbnail, []
    setup.editor.thumbnail = lambda side: reads.append(document.time) or thumbnail(side)
    setup.controller.apply()
    times = set()
    while True:
        work, done, report, token = setup.runner.jobs.pop(0)
        done(work(JobContext(token, report)), None)
        if not setup.runner.jobs:
            break  # Apply has ended
        times.add(document.time)
        setup.controller.check_layer()  # the docker's poll between two pieces of Apply
    assert len(times) > 1  # the playhead did move while the poll looked
    assert reads == []
    assert setup.view.status[0] == "info" and "3 frames of “Walk”" in setup.view.status[1]
    added = setup.view.status
    setup.controller.check_layer()  # the first poll after Apply: the new layer, quietly
    setup.runner.run()
    assert len(reads) == 1 and setup.view.status == added
