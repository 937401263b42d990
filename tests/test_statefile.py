"""The state file: complete, encrypted, signed, atomic, written only when something changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Pair, make_pair
from vault import bundle, ingest, statefile, statehook, store, tombstones
from vault.errors import BadSignature, ChatvaultError, UntrustedSigner
from vault_kit import Chain, conv, outbox, stick


@pytest.fixture
def vault(pair: Pair, tmp_path: Path) -> Pair:
    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["hello"], email="mara@example.org")])
    ingest.ingest_media(pair.vault_path, media_root)
    return pair


def add_tombstone(home: Path, email: str) -> None:
    conn = store.open_store(home / store.FILE_NAME)
    try:
        key = tombstones.load_key(home, conn)
        with store.transaction(conn):
            tombstones.add(conn, key, "email", email)
    finally:
        conn.close()


def test_written_after_ingest_with_everything_a_rebuild_needs(vault: Pair) -> None:
    path = statefile.path_of(vault.vault_path)
    assert path == vault.vault_path / "archive" / "vault-state.cvs" and path.is_file()

    state = statefile.read(path, vault.vault.identity())

    head = state.header
    key_file = vault.vault_path / "keys" / tombstones.KEY_FILE
    assert head["identifiers_key"] == key_file.read_text().strip()
    assert head["trust"] == (vault.vault_path / "trust.json").read_text()
    assert head["config"] == vault.vault.config.read_text()
    assert head["public_key"] == vault.vault.public_key.read_text()
    assert [b[:2] for b in state.bundles] == [["web", 1]]
    assert "tombstones" in state.rows and "settings" in state.rows
    assert not {"conversations", "messages", "audit_log", "bundles"} & set(state.rows)
    check = dict(state.rows["settings"])["identifier_key_check"]
    assert check  # the store's check value of the key travels with the key
    assert state.meta["kind"] == "state" and state.meta["recipients"] == \
        [vault.vault.public().fingerprint]


def test_encrypted_nothing_readable_without_the_key(vault: Pair) -> None:
    add_tombstone(vault.vault_path, "mara@example.org")
    statehook.changed(vault.vault_path, "erasure")
    data = statefile.path_of(vault.vault_path).read_bytes()
    key_hex = (vault.vault_path / "keys" / tombstones.KEY_FILE).read_text().strip()
    with store.open_store(vault.vault_path / store.FILE_NAME) as conn:
        (tomb,) = conn.execute("SELECT hash FROM tombstones").fetchone()
    for secret in (key_hex, tomb, "mara@example.org", "identifier_key_check", "test-exporter"):
        assert secret.encode() not in data
    other = make_pair(vault.root / "elsewhere")
    with pytest.raises(ChatvaultError) as err:
        statefile.read(statefile.path_of(vault.vault_path), other.vault.identity(),
                       trust=statefile.OwnKey(vault.vault.public()))
    assert err.value.code == "not_a_recipient"


def test_signed_tampering_and_foreign_signer_refused(vault: Pair, tmp_path: Path) -> None:
    path = statefile.path_of(vault.vault_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.cvs"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadSignature):
        statefile.read(bad, vault.vault.identity())
    other = make_pair(tmp_path / "other")
    statefile.write(other.vault_path, "test")
    with pytest.raises(UntrustedSigner):
        statefile.read(statefile.path_of(other.vault_path), vault.vault.identity())


def test_rewritten_only_on_change_and_chained(vault: Pair) -> None:
    path = statefile.path_of(vault.vault_path)
    first = path.read_bytes()
    seq = bundle.inspect(path)["meta"]["sequence"]

    statehook.changed(vault.vault_path, "nothing")
    assert path.read_bytes() == first

    add_tombstone(vault.vault_path, "someone@example.org")
    assert statefile.describe(vault.vault_path)["current"] is False
    statehook.changed(vault.vault_path, "erasure")

    meta = bundle.inspect(path)["meta"]
    import hashlib

    assert meta["sequence"] == seq + 1
    assert meta["prev_hash"] == hashlib.sha256(first).hexdigest()
    assert meta["context"]["reason"] == "erasure"
    assert statefile.describe(vault.vault_path)["current"] is True
    state = statefile.read(path, vault.vault.identity())
    assert len(state.rows["tombstones"]) == 1


def test_trust_and_config_changes_are_state_too(vault: Pair, cli: Any) -> None:
    seq = bundle.inspect(statefile.path_of(vault.vault_path))["meta"]["sequence"]
    other = make_pair(vault.root / "more")
    res = cli("keys", "trust", other.exporter.public_key, "--role", "exporter",
              "--home", vault.vault_path)
    assert res.code == 0
    meta = bundle.inspect(statefile.path_of(vault.vault_path))["meta"]
    assert meta["sequence"] == seq + 1 and meta["context"]["reason"] == "trust"

    cfg = vault.vault.config
    cfg.write_text(cfg.read_text().replace("retention_days = 0", "retention_days = 400"))
    assert statefile.describe(vault.vault_path)["current"] is False
    res = cli("vault", "state-save", "--home", vault.vault_path, "--json")
    assert res.code == 0 and res.json()["current"] is True
    state = statefile.read(statefile.path_of(vault.vault_path), vault.vault.identity())
    assert "retention_days = 400" in state.header["config"]


def test_failed_write_keeps_the_previous_file(vault: Pair, monkeypatch: Any) -> None:
    path = statefile.path_of(vault.vault_path)
    before = path.read_bytes()
    add_tombstone(vault.vault_path, "someone@example.org")

    def broken(snap: dict[str, Any], reason: str) -> Any:
        yield {"part": "header"}
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefile, "_records", broken)
    with pytest.raises(OSError):
        statefile.write(vault.vault_path, "erasure")
    assert path.read_bytes() == before
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".vault-state.cvs")]
    assert leftovers == []


def test_status_warns_when_missing_or_stale(vault: Pair) -> None:
    from vault import vaultstatus

    def finding() -> dict[str, Any] | None:
        found = [f for f in vaultstatus.report(vault.vault_path)["findings"]
                 if f["check"] == "state_file"]
        return found[0] if found else None

    assert finding() is None
    add_tombstone(vault.vault_path, "x@example.org")
    f = finding()
    assert f is not None and "out of date" in f["message"]
    statefile.path_of(vault.vault_path).unlink()
    f = finding()
    assert f is not None and "no state file" in f["message"]


def test_read_refuses_an_export_bundle(vault: Pair, tmp_path: Path) -> None:
    from vault.errors import MalformedHeader

    sealed = Chain(vault, tmp_path / "b").seal([conv("c9", ["x"])])
    with pytest.raises(MalformedHeader, match="not a state file"):
        statefile.read(sealed.path, vault.vault.identity(),
                       trust=statefile.OwnKey(vault.exporter.public()))


def test_wrapped_key_without_passphrase_leaves_it_stale_then_state_save(
        tmp_path: Path, cli: Any) -> None:
    """A change made without the passphrase at hand is kept; status says the file is stale."""
    from vault import home, keys

    (tmp_path / "pass").write_text("correct horse\n")
    vlt = home.create("vault", tmp_path / "v", "wrapped", passphrase=b"correct horse")
    exp = home.create("exporter", tmp_path / "e", "exp")
    t = vlt.trust()
    t.trust(exp.public_key.read_text(), "exporter")
    t.save()
    assert keys.read_passphrase(None) is None
    statehook.changed(vlt.path, "trust")  # no passphrase: nothing written, nothing raised
    assert not statefile.path_of(vlt.path).exists()

    res = cli("vault", "state-save", "--home", vlt.path, "--passphrase-file",
              tmp_path / "pass", "--json")
    assert res.code == 0 and res.json()["current"] is True
    state = statefile.read(statefile.path_of(vlt.path), vlt.identity(tmp_path / "pass"))
    assert "exp" in state.header["trust"]


def test_a_damaged_state_file_is_critical_and_state_save_replaces_it(vault: Pair,
                                                                     cli: Any) -> None:
    """Found by vault status long before a rebuild would need the file."""
    add_tombstone(vault.vault_path, "x@example.org")
    statehook.changed(vault.vault_path, "tombstones")
    path = statefile.path_of(vault.vault_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # in the encrypted payload: the header still parses
    path.write_bytes(bytes(data))

    status = cli("vault", "status", "--home", vault.vault_path, "--json")
    assert status.code == 2, status.err
    [found] = [f for f in status.json()["findings"] if f["check"] == "state_file"]
    assert found["level"] == "CRITICAL" and "does not verify" in found["message"]

    saved = cli("vault", "state-save", "--home", vault.vault_path)
    assert saved.code == 0, saved.err
    state = statefile.read(path, vault.vault.identity())
    assert len(state.rows["tombstones"]) == 1
    status = cli("vault", "status", "--home", vault.vault_path, "--json")
    assert not [f for f in status.json()["findings"] if f["check"] == "state_file"]


def test_a_store_older_than_the_state_file_never_overwrites_it(vault: Pair,
                                                               cli: Any) -> None:
    """An old store put back would make the state file forget an erasure."""
    db = vault.vault_path / store.FILE_NAME
    old = vault.vault_path.parent / "old-store.db"
    conn = store.open_store(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM INTO ?", (str(old),))
    finally:
        conn.close()
    add_tombstone(vault.vault_path, "x@example.org")
    statehook.changed(vault.vault_path, "tombstones")
    path = statefile.path_of(vault.vault_path)
    before = path.read_bytes()

    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    db.write_bytes(old.read_bytes())  # the backup from before the erasure
    saved = cli("vault", "state-save", "--home", vault.vault_path, "--json")
    assert saved.code == 4, saved.err
    assert saved.json()["error"] == "state_regression"
    assert "tombstones: 1 in the state file, 0 in the store" in saved.err
    assert path.read_bytes() == before, "the state file still remembers the erasure"


def _stale_home(vault: Pair, tmp_path: Path, how: str) -> Path:
    """A vault home whose store is older than its state file."""
    import shutil

    from vault import home

    if how == "made anew":  # keys import-paper, then the archive copied, before a rebuild
        fresh = home.create("vault", tmp_path / "fresh", "vault-a",
                            identity=vault.vault.identity())
        shutil.copytree(vault.vault_path / "archive", fresh.path / "archive",
                        dirs_exist_ok=True)
        shutil.copy(vault.vault_path / "trust.json", fresh.path / "trust.json")
        return fresh.path
    db = vault.vault_path / store.FILE_NAME  # "backup put back": from before an erasure
    old = tmp_path / "old-store.db"
    conn = store.open_store(db)  # closed before the file is replaced (a with block is not)
    try:
        conn.execute("VACUUM INTO ?", (str(old),))
    finally:
        conn.close()
    add_tombstone(vault.vault_path, "x@example.org")
    statehook.changed(vault.vault_path, "tombstones")
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    db.write_bytes(old.read_bytes())
    return vault.vault_path


@pytest.mark.parametrize("how", ["made anew", "backup put back"])
def test_a_store_older_than_the_state_file_is_used_by_no_command(vault: Pair, tmp_path: Path,
                                                                 cli: Any, how: str) -> None:
    """It would say 'nothing held', or hand out and take back what was erased since."""
    h = _stale_home(vault, tmp_path, how)
    again = stick(tmp_path / "again")
    Chain(vault, outbox(again)).seal([conv("c1", ["hello"], email="mara@example.org")])
    for args in (["subject", "find", "--email", "mara@example.org"], ["search", "hello"],
                 ["restore", "create", "--to", vault.exporter.public_key, "--source", "web",
                  "--out", tmp_path / "restored"], ["vault", "ingest", again],
                 ["vault", "state-save"]):
        got = cli(*args, "--home", h, "--json")
        assert got.code == 4, (args, got.err)
        assert got.json()["error"] == "state_regression", got.out
        assert "vault rebuild" in got.err
    assert not (tmp_path / "restored").exists() or not list((tmp_path / "restored").iterdir())
    status = cli("vault", "status", "--home", h, "--json")
    assert status.code == 2
    [found] = [f for f in status.json()["findings"] if f["check"] == "state_file"]
    assert found["level"] == "CRITICAL" and "older than the state file" in found["message"]


def test_the_quick_header_reading_agrees_with_the_bundle_reader(vault: Pair) -> None:
    from vault import statecounts

    path = statefile.path_of(vault.vault_path)
    kept = bundle.inspect(path)["meta"]["context"]["kept"]
    assert statecounts.recorded(path) == kept and kept["bundles"] == 1
    path.write_bytes(b"\x00" * 100)
    assert statecounts.recorded(path) == {}
