"""The Krita docker's poll while Apply runs (mock Krita, real daemon)."""

from test_plugin_krita_mock import three_frames_edited

from plugin.recolor_with_palette.controller import JobContext


def test_the_poll_reads_no_frames_while_they_are_applied(daemon, tmp_path):
    """Apply moves the playhead from frame to frame (libkis 5.1 writes at the current time
    only); the 0.7 s poll saw new content at each move and read every keyframe again and
    asked the daemon for their palette, slowing the Apply it was watching. It now waits
    for Apply to end, then follows the new layer quietly."""
    setup = three_frames_edited(daemon, tmp_path)
    document = setup.document
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
