"""Every output holding plaintext personal data is the owner's only: 0600 files, 0700 folders.

Run under a permissive umask (022, the usual one, and 000) so that nothing
passes by the umask's grace.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import Pair, run_cli
from gdpr_kit import blob
from vault import dsarpack, ingest
from vault_kit import Chain, conv, outbox, stick


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _all_private(root: Path, *, with_root: bool = True) -> None:
    """Every file under ``root`` 0600, every folder 0700 (``root`` too unless told)."""
    found = sorted(root.rglob("*"))
    assert any(p.is_file() for p in found)
    wrong = {str(p.relative_to(root)): oct(_mode(p)) for p in found
             if _mode(p) != (0o700 if p.is_dir() else 0o600)}
    if with_root and _mode(root) != 0o700:
        wrong["."] = oct(_mode(root))
    assert wrong == {}


@pytest.fixture
def with_blob(pair: Pair) -> tuple[Pair, Path]:
    """An export bundle of Mara's chat, with one attachment."""
    sha, content = blob(os.urandom(512))
    chat = conv("c1", ["hello, my address is 1 Example Street", "noted"])
    chat["messages"][0]["attachments"] = [{"sha256": sha, "name": "id.jpg",
                                           "type": "image/jpeg", "size": 512}]
    sealed = Chain(pair, pair.root / "sealed").seal([chat], blobs={sha: content})
    return pair, sealed.path


def test_bundle_open_output_and_attachments(with_blob: tuple[Pair, Path], umask: int) -> None:
    pair, path = with_blob
    blobs = pair.root / "blobs"
    blobs.mkdir()
    out = pair.root / "out.jsonl"
    res = run_cli("bundle", "open", path, "--home", pair.vault_path, "-o", out,
                  "--blobs", blobs)
    assert res.code == 0, res.err
    assert _mode(out) == 0o600
    _all_private(blobs, with_root=False)


def test_sources_convert_output(tmp_path: Path, umask: int) -> None:
    sample = Path(__file__).resolve().parents[1] / "vault" / "samples" / "conversations.jsonl"
    out = tmp_path / "out.jsonl"
    res = run_cli("sources", "convert", sample, "-f", "jsonl", "-o", out)
    assert res.code == 0, res.err
    assert _mode(out) == 0o600


@pytest.fixture
def archived(pair: Pair, tmp_path: Path) -> Pair:
    """A vault holding Mara's chats, one with an attachment."""
    sha, content = blob(os.urandom(512))
    chat = conv("c1", ["hello, my address is 1 Example Street", "noted"])
    chat["messages"][0]["attachments"] = [{"sha256": sha, "name": "id.jpg",
                                           "type": "image/jpeg", "size": 512}]
    media_root = stick(tmp_path / "stick")
    chain = Chain(pair, outbox(media_root), context={"phone_region": "GB", "format": "jsonl"})
    chain.seal([chat, conv("c2", ["again"])], blobs={sha: content})
    ingest.ingest_media(pair.vault_path, media_root)
    return pair


def test_restore_open_output(archived: Pair, tmp_path: Path, umask: int) -> None:
    pair = archived
    made = run_cli("restore", "create", "--home", pair.vault_path, "--to",
                   pair.exporter.public_key, "--out", tmp_path / "r", "--source", "web", "--json")
    assert made.code == 0, made.err
    _all_private(tmp_path / "r")  # sealed, yet named by source and dates: kept private too
    parts = [p["path"] for p in made.json()["parts"]]  # type: ignore[index]
    out = tmp_path / "opened"
    res = run_cli("restore", "open", *parts, "--home", pair.exporter_path, "--out", out,
                  "--format", "native")
    assert res.code == 0, res.err
    assert (out / "web.jsonl").is_file() and (out / "attachments").is_dir()
    assert any((out / "native").rglob("*"))
    _all_private(out)


def _dsar_case(pair: Pair) -> str:
    r = run_cli("dsar", "open", "--received", "2024-09-02", "--email", "mara.quint@example.org",
                "--json", "--home", pair.vault_path)
    assert r.code == 0, r.err
    return str(r.json()["case_id"])  # type: ignore[index]


def test_dsar_package_and_its_opened_copy(archived: Pair, tmp_path: Path, umask: int) -> None:
    pair = archived
    case = _dsar_case(pair)
    r = run_cli("dsar", "export", case, "--out", tmp_path / "out", "--json",
                "--home", pair.vault_path)
    assert r.code == 0, r.err
    package = Path(r.json()["path"])  # type: ignore[index]
    assert (package / "attachments").is_dir()
    _all_private(tmp_path / "out")

    r = run_cli("dsar", "export", case, "--out", tmp_path / "sealed", "--json",
                "--seal-to", pair.exporter.public_key, "--home", pair.vault_path)
    assert r.code == 0, r.err
    sealed: Any = r.json()["sealed"]  # type: ignore[index]
    opened = dsarpack.unseal(Path(sealed), pair.exporter.identity(), pair.exporter.trust(),
                             tmp_path / "opened")
    assert (opened / "manifest.json").is_file()
    _all_private(tmp_path / "opened")


@pytest.mark.parametrize("kind", ["exporter", "vault", "requester"])
def test_a_new_home_is_the_owners_only(tmp_path: Path, umask: int, kind: str) -> None:
    # config.toml and keys/public.key were written with the umask's mode (0666 under 000)
    home = tmp_path / "home"
    result = run_cli("init", kind, home, "--name", "site")
    assert result.code == 0, result.err
    _all_private(home)
    assert not [p for p in home.rglob("*") if ".tmp-" in p.name]
