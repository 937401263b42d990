"""Requests on a real stick: an exFAT image on a loop device, real udev, the real daemon.

One insertion carries a new bundle and one request of each kind; the daemon
(in its own process, killed if it opens an IP socket) ingests the bundle,
writes its receipt, answers the three requests and only then says the stick
is safe to remove. The image is then mounted as the online side would, and
the answers are collected and opened from it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import media_kit as mk
from requests_kit import ANA, JONAS, world
from vault import answers, subjects
from vault_kit import Chain, conv

pytestmark = pytest.mark.media


@pytest.fixture
def setup(tmp_path: Path):
    mk.require(udev=True, exfat=True)
    w = world(tmp_path)
    prefix = mk.token()
    mount_root = tmp_path / "mnt"
    loops: list[str] = []
    yield w, prefix, mount_root, loops
    for devnode in loops:
        mk.detach(devnode)
    mk.lazy_unmount_under(mount_root)


def test_daemon_answers_every_kind_of_request_on_a_real_stick(setup) -> None:
    w, prefix, mount_root, loops = setup
    pair = w.vault.pair
    asked = {
        "restore": w.ask(w.it, "restore", source="sample"),
        "dsar": w.ask(w.dpo, "dsar", emails=[JONAS], phones=[], received="2024-05-02"),
        "erase": w.ask(w.dpo, "erase", emails=[ANA], phones=[], reason="asked by letter"),
    }
    sealed = Chain(pair, pair.root / "sealed").seal([conv("n1", ["a new conversation"])])
    files = mk.outbox_files([sealed.path])
    files.update({f"chatvault/requests/{a['file']}": Path(a["path"]) for a in asked.values()})
    image = mk.exfat_image(pair.root / "stick.img", prefix + "R", files)

    mk.configure(pair.vault_path, match=f"ID_FS_LABEL={prefix}*", mount_root=mount_root)
    with mk.DaemonProcess(pair.vault_path, pair.root / "daemon.log") as daemon:
        daemon.wait_for(r"watching for media")
        loops.append(mk.attach(image))
        log = daemon.wait_for(rf"safe to remove {prefix}R")
        assert mk.mounts_of(loops[0]) == [], "unmounted before it is said to be safe"
        assert daemon.stop() == 0, daemon.text()
    assert "NETWORK SOCKET" not in log
    steps = [m.group(0) for m in re.finditer(
        rf"1 receipt\(s\) written|request \w+ \((restore|dsar|erase)\) from [\w-]+: done|"
        rf"safe to remove {prefix}R", log)]
    assert steps[0] == "1 receipt(s) written" and steps[-1] == f"safe to remove {prefix}R"
    assert len(steps) == 5, log
    assert JONAS not in log and ANA not in log, "no parameter reaches the log"
    with subjects.open_vault(w.vlt.path) as v:
        assert subjects.find(v.conn, subjects.Subject(emails=[ANA])) == []
        assert v.conn.execute("SELECT count(*) FROM conversations WHERE conversation_id = "
                              "'n1'").fetchone()[0] == 1
    mk.detach(loops.pop())

    out = pair.root / "collected"
    with mk.mounted_image(image) as point:
        it = answers.collect(w.it.path, point, out)
        dpo = answers.collect(w.dpo.path, point, out)
        left = sorted(p.relative_to(point).as_posix() for p in (point / "chatvault").rglob("*")
                      if p.is_file())
    got = {i.action: i for i in it.items + dpo.items if i.result != "not_ours"}
    assert {a: (i.status, i.result) for a, i in got.items()} == {
        "restore": ("done", "opened"), "dsar": ("done", "opened"), "erase": ("done", "recorded")}
    restored = (Path(got["restore"].out) / "sample.jsonl").read_text().splitlines()
    assert len(restored) == 5, "six held, Ana erased on the same insertion before the restore"
    package = json.loads((Path(got["dsar"].out) / "data.json").read_text())
    assert [c["conversation_id"] for c in package["conversations"]] == ["web-1002"]
    assert left[0] == f"chatvault/outbox/{sealed.path.name}" and len(left) == 2
    assert left[1].startswith("chatvault/receipts/") and left[1].endswith(".receipt.json")
