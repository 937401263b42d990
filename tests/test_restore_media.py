"""Restore sets on real removable media: FUSE exFAT on a loop device, carried and opened."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair
from export_kit import loop_image, mount, need_root, unmount
from test_restore import _noisy, parts


def test_restore_set_on_an_exfat_stick_opens_after_remount(pair: Pair, tmp_path: Path,
                                                           cli: Any) -> None:
    need_root()
    if shutil.which("mount.exfat-fuse") is None or shutil.which("mkfs.exfat") is None:
        if os.environ.get("CHATVAULT_REQUIRE_MEDIA_TESTS") == "1":
            pytest.fail("exFAT tools missing")
        pytest.skip("exFAT tools missing")
    convs, _ = _noisy(pair, tmp_path, n=8)
    stick = tmp_path / "usb"  # (tmp_path / "stick" is the folder the bundles came on)
    with loop_image(tmp_path / "stick.img", "exfat", 16) as dev:
        mount(dev, stick, "exfat")
        try:
            res = cli("restore", "create", "--home", pair.vault_path, "--to",
                      pair.exporter.public_key, "--source", "web", "--media", stick,
                      "--max-bytes", "300000", "--json")
            assert res.code == 0, res.err
            made = res.json()
            assert len(made["parts"]) >= 2
            answers = stick / "chatvault" / "answers"
            names = sorted(p.name for p in answers.iterdir())
            assert names == sorted(Path(p).name for p in parts(made))  # no temporaries
        finally:
            unmount(stick)
        subprocess.run(["sync"], check=True)
        # carried to the online side: mounted again, opened from the stick itself
        mount(dev, stick, "exfat")
        try:
            files = sorted(str(p) for p in answers.iterdir())
            res = cli("restore", "open", *files, "--home", pair.exporter_path, "--out",
                      tmp_path / "opened", "--json")
            assert res.code == 0, res.err
            assert res.json()["conversations"] == len(convs)
        finally:
            unmount(stick)
