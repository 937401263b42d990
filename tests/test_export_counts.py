"""The run's counts are of what was sealed: a bundle that failed to finish counts nothing.

With the outbox's disk full, a run said "30 new or changed (600 messages)
sealed into 0 bundle(s)" and its total counted those 30 conversations.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from export_kit import bundle_files, conv, make_site, noise
from vault import atomic, bundle


def test_a_bundle_that_failed_is_not_counted(tmp_path: Path, cli,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    rng = random.Random(5)
    site = make_site(tmp_path, max_bundle_bytes=64 * 1024,
                     convs=[conv(f"c{i}", [noise(rng, 20_000)]) for i in range(6)])
    real_finish = bundle.BundleWriter.finish
    calls = []

    def finish(self):  # the second bundle meets a full disk
        calls.append(1)
        if len(calls) == 2:
            self.abort()
            raise atomic.media_error(OSError(errno.ENOSPC, "No space left"), self.path)
        return real_finish(self)

    monkeypatch.setattr(bundle.BundleWriter, "finish", finish)
    res = cli("export", "run", "--home", site.exporter.path, "--media", tmp_path / "none",
              "--json")

    assert res.code == 5
    [src] = res.json()["sources"]
    [sealed] = src["bundles"]
    assert bundle_files(site.outbox) == ["web-00000001.cvb"]
    assert src["conversations"] == sealed["conversations"] < 6
    assert src["messages"] == sealed["messages"]
    assert res.json()["totals"]["conversations"] == sealed["conversations"]
