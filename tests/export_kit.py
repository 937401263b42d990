"""Helpers for the exporter tests: homes with a config, data, receipts, real mounts.

:func:`check_consistent` is the invariant every crash and media test
asserts: what the state records, what the local outbox holds and what the
stick holds agree, and no file under a bundle's name is incomplete.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from vault import bundle, canonical, home, receipts
from vault.atomic import is_temporary
from vault.exportstate import ExportState
from vault.home import Home


def conv(cid: str, texts: list[str], day: int = 14) -> dict[str, Any]:
    return {"conversation_id": cid, "started_at": f"2024-03-{day:02d}T09:00:00Z",
            "participants": [{"id": "c", "role": "customer", "name": "Mara Quint",
                              "phone": "07700 900123"},
                             {"id": "a", "role": "agent", "name": "Ines"}],
            "messages": [{"id": f"m{i}", "at": f"2024-03-{day:02d}T09:{i % 60:02d}:00Z",
                          "from": "c" if i % 2 == 0 else "a", "text": t}
                         for i, t in enumerate(texts)]}


def noise(rng: random.Random, size: int) -> str:
    """Text that zstd cannot shrink much: the worst case for the size budget."""
    alphabet = "abcdefghijklmnopqrstuvwxyzÄÖü€0123456789 "
    return "".join(rng.choice(alphabet) for _ in range(size))


def write_jsonl(path: Path, convs: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(canonical.dumps(c) + b"\n" for c in convs))
    return path


@dataclass
class Site:
    """An exporter home with a config, its vault(s), a source file and a stick."""

    root: Path
    exporter: Home
    vaults: list[Home]
    source: Path
    stick: Path
    extra_sources: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def outbox(self) -> Path:
        return self.exporter.path / "outbox"

    @property
    def stick_outbox(self) -> Path:
        return self.stick / "chatvault" / "outbox"

    def args(self, *more: str | Path) -> list[str | Path]:
        return ["--home", self.exporter.path, "--media", self.stick, *more]

    def state(self) -> ExportState:
        return ExportState.open(self.exporter.path)


def make_site(root: Path, *, vaults: int = 1, convs: list[dict[str, Any]] | None = None,
              max_bundle_bytes: int | None = None, stick: Path | None = None,
              trust_vaults: bool = True, timezone: str = "Europe/London",
              phone_region: str = "UK") -> Site:
    exp = home.create("exporter", root / "exporter", "test-exporter")
    vault_homes = [home.create("vault", root / f"vault{i}", f"vault-{i}") for i in range(vaults)]
    t = exp.trust()
    for v in vault_homes:
        if trust_vaults:
            t.trust(v.public_key.read_text(), "vault")
        vt = v.trust()
        vt.trust(exp.public_key.read_text(), "exporter")
        vt.save()
    t.save()
    source = write_jsonl(root / "exports" / "web.jsonl", convs if convs is not None else
                         [conv(f"c{i}", [f"hello {i}", "reply"]) for i in range(3)])
    stick = stick or root / "stick"
    stick.mkdir(exist_ok=True)
    # the tests' sticks are folders (and loop-device mounts) beside the homes
    text = exp.config.read_text().replace("mounted_only = true", "mounted_only = false")
    for v in vault_homes:
        text += f'\n[[recipients]]\npublic_key = "{v.public_key}"\n'
    text += (f'\n[[sources]]\nname = "web"\nformat = "jsonl"\npath = "{source}"\n'
             f'timezone = "{timezone}"\nphone_region = "{phone_region}"\n')
    if max_bundle_bytes is not None:
        text = text.replace("max_bundle_bytes = 1073741824",
                            f"max_bundle_bytes = {max_bundle_bytes}")
    exp.config.write_text(text)
    return Site(root, exp, vault_homes, source, stick)


def add_source(site: Site, name: str, path: Path, fmt: str = "jsonl",
               timezone: str | None = None) -> None:
    zone = f'timezone = "{timezone}"\n' if timezone else ""
    with site.exporter.config.open("a") as fh:
        fh.write(f'\n[[sources]]\nname = "{name}"\nformat = "{fmt}"\npath = "{path}"\n{zone}')
    site.extra_sources.append((name, path))


def open_bundle(vault: Home, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(verified header meta, records) of a bundle, opened with a vault's key."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "opened.jsonl"
        verified, _ = bundle.open_to_jsonl(path, vault.identity(), vault.trust(), out)
        rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    return verified.meta, rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bundle_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".cvb"))


def temporaries(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if is_temporary(p.name))


def check_consistent(site: Site, *, settled: bool = False) -> None:
    """State, local outbox and stick agree; with ``settled``, nothing is left to do.

    Always: the chain is contiguous with each header naming the previous
    hash; every unacknowledged bundle has its exact local copy; every bundle
    file on the stick is byte-identical to a recorded bundle; "written" in the
    state means it really is on the stick. Settled (after a successful run):
    no temporaries anywhere, no unrecorded local file, every unacknowledged
    bundle on the stick.
    """
    with site.state() as state:
        rows = state.bundles()
        by_name = {r.file_name: r for r in rows}
        for name in {r.source for r in rows}:
            chain = [r for r in rows if r.source == name]
            assert [r.sequence for r in chain] == list(range(1, len(chain) + 1))
            assert state.chain(name) == (chain[-1].sequence, chain[-1].sha256)
            prev = None
            for r in chain:
                local = site.outbox / r.file_name
                if r.acknowledged_at is None:
                    assert local.is_file(), f"{r.file_name} recorded but not in the outbox"
                    assert sha256(local) == r.sha256
                    assert bundle.inspect(local)["meta"]["prev_hash"] == prev
                prev = r.sha256
        for name in bundle_files(site.stick_outbox):
            assert name in by_name, f"{name} on the stick was never recorded"
            assert sha256(site.stick_outbox / name) == by_name[name].sha256, name
        for r in rows:
            if r.media_written_at and r.acknowledged_at is None:
                assert r.file_name in bundle_files(site.stick_outbox), r.file_name
        if settled:
            assert temporaries(site.outbox) == [] and temporaries(site.stick_outbox) == []
            assert set(bundle_files(site.outbox)) == {r.file_name for r in rows
                                                      if r.acknowledged_at is None}
            for r in rows:
                if r.acknowledged_at is None:
                    assert r.media_written_at, f"{r.file_name} not written to media"


def vault_view(site: Site, vault: Home | None = None) -> dict[str, dict[str, Any]]:
    """What a vault would hold after ingesting the stick in order: last version wins."""
    held: dict[str, dict[str, Any]] = {}
    for name in bundle_files(site.stick_outbox):
        _, records = open_bundle(vault or site.vaults[0], site.stick_outbox / name)
        for r in records:
            held[r["conversation_id"]] = r
    return held


def give_receipt(site: Site, vault: Home, name: str, status: str = "ingested",
                 reason: str | None = None) -> Path:
    """What the vault daemon does: a signed receipt for a bundle on the stick."""
    path = site.stick_outbox / name
    meta, _ = open_bundle(vault, path)
    doc = receipts.make(vault.identity(), bundle_file=name, bundle_sha256=sha256(path),
                        status=status, reason=reason, meta=meta,
                        counts={"conversations": meta["counts"]["conversations"]})
    return receipts.write(site.stick, doc)


# -- real mounts (root) --------------------------------------------------------------

def need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CHATVAULT_REQUIRE_MEDIA_TESTS") == "1":
            pytest.fail("media tests need root (CHATVAULT_REQUIRE_MEDIA_TESTS=1)")
        pytest.skip("needs root to mount file systems")


def sh(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    need_root()
    path.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def loop_image(image: Path, fstype: str, size_mb: int) -> Iterator[Path]:
    """A file-backed block device holding a fresh ``fstype`` file system."""
    need_root()
    with open(image, "wb") as fh:
        fh.truncate(size_mb * 1024 * 1024)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        sh(f"mkfs.{fstype}", *(["-q", "-F"] if fstype == "ext4" else []), dev)
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def mount(dev: Path, path: Path, fstype: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if fstype == "exfat":
        sh("mount.exfat-fuse", dev, path)
    else:
        sh("mount", "-t", fstype, dev, path)


def unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
