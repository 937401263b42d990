"""``vault status``: each check, the exit codes, JSON, Prometheus, pluggable checks."""

from __future__ import annotations

import re
import sys
import time
import types
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import Pair
from vault import ingest, store, timestamps, vaultstatus
from vault_kit import Chain, conv, outbox, stick


@pytest.fixture(autouse=True)
def _own_checks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about this module's checks; others (drills, DSARs) test theirs."""
    monkeypatch.setattr(vaultstatus, "CHECK_MODULES", ("vault.vaultstatus",))


def _ingest(pair: Pair, tmp_path: Path, plan: list[dict[str, Any]]) -> Path:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    for i, kw in enumerate(plan):
        ch.seal([conv(f"c{i}", ["hello"])], **kw)
    ingest.ingest_media(pair.vault_path, media_root)
    return media_root


def _levels(rep: dict[str, Any]) -> dict[str, str]:
    return {f["check"]: f["level"] for f in rep["findings"]}


def test_fresh_vault_is_ok(pair: Pair, cli: Any) -> None:
    res = cli("vault", "status", "--home", pair.vault_path)
    assert res.code == 0, res.out + res.err
    assert res.out.startswith("vault status: OK")


def test_gap_warns_until_filled(pair: Pair, tmp_path: Path, cli: Any) -> None:
    media_root = stick(tmp_path / "stick")
    ch = Chain(pair, outbox(media_root))
    ch.seal([conv("c1", ["one"])])
    two = ch.seal([conv("c2", ["two"])], name="held-back")
    ch.seal([conv("c3", ["three"])])
    ingest.ingest_media(pair.vault_path, media_root)

    res = cli("vault", "status", "--home", pair.vault_path, "--json")

    assert res.code == 1
    rep = res.json()
    assert rep["status"] == "WARNING" and _levels(rep) == {"gaps": "WARNING"}
    [web] = rep["sources"]
    assert (web["last_sequence"], web["gaps"]) == (3, [[2, 2]])

    two.path.rename(outbox(media_root) / "web-00000002.cvb")
    ingest.ingest_media(pair.vault_path, media_root)
    assert vaultstatus.report(pair.vault_path)["status"] == "OK"


def test_fork_is_critical(pair: Pair, tmp_path: Path, cli: Any) -> None:
    _ingest(pair, tmp_path, [{}, {"sequence": 1, "prev": None, "name": "web-00000001z.cvb"}])

    res = cli("vault", "status", "--home", pair.vault_path)

    assert res.code == 2
    assert "CRITICAL: web-00000001z.cvb: FORK refused" in res.out
    rep = vaultstatus.report(pair.vault_path)
    assert rep["sources"][0]["forks"] == 1


def test_quarantined_bundle_warns_until_a_good_copy_arrives(pair: Pair,
                                                            tmp_path: Path) -> None:
    media_root = stick(tmp_path / "stick")
    good = Chain(pair, tmp_path / "good").seal([conv("c1", ["x"])])
    bad = outbox(media_root) / good.path.name
    data = bytearray(good.path.read_bytes())
    data[-10] ^= 1
    bad.write_bytes(bytes(data))
    ingest.ingest_media(pair.vault_path, media_root)
    assert _levels(vaultstatus.report(pair.vault_path)) == {"quarantine": "WARNING"}

    bad.write_bytes(good.path.read_bytes())
    ingest.ingest_media(pair.vault_path, media_root)

    assert vaultstatus.report(pair.vault_path)["findings"] == []


def test_overdue_and_never_seen_sources(pair: Pair, tmp_path: Path) -> None:
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text() + '\n[sources."web"]\nexpected_every_hours = 26\n'
                   '\n[sources."whatsapp-support"]\nexpected_every_hours = 26\n')
    _ingest(pair, tmp_path, [{}])
    now = datetime.now(timestamps.UTC)

    soon = vaultstatus.report(pair.vault_path, now=now + timedelta(hours=2))
    late = vaultstatus.report(pair.vault_path, now=now + timedelta(hours=30))

    assert [f["message"] for f in soon["findings"]] == [
        "source whatsapp-support is overdue: never received, expected every 26 h"]
    assert {s["source"]: s["overdue"] for s in late["sources"]} == \
        {"web": True, "whatsapp-support": True}
    assert late["exit_code"] == 1


def test_a_configured_source_never_received_is_said(pair: Pair, tmp_path: Path) -> None:
    """[sources."wbe"] with retention_days: a typo that would keep retention off unseen."""
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text() + '\n[sources."wbe"]\nretention_days = 30\n')
    fresh = vaultstatus.report(pair.vault_path)
    assert fresh["exit_code"] == 0  # nothing held yet: nothing to compare the name with
    _ingest(pair, tmp_path, [{}])

    rep = vaultstatus.report(pair.vault_path)

    [finding] = [f for f in rep["findings"] if f["check"] == "never_received"]
    assert finding["level"] == "WARNING" and rep["exit_code"] == 1
    assert "source wbe is configured but none of its bundles was ever ingested (held: web)" \
        in finding["message"]


def test_bundle_signed_ahead_of_the_vault_clock(pair: Pair, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = timestamps.now_utc
    _ingest(pair, tmp_path / "a", [{}])
    media_root = stick(tmp_path / "b")
    Chain(pair, outbox(media_root), last={"web": _last(pair)}).seal([conv("c9", ["x"])])
    # The vault's clock runs two days behind while the next bundle is ingested.
    monkeypatch.setattr(timestamps, "now_utc", lambda: timestamps.format_utc(
        datetime.now(timestamps.UTC) - timedelta(days=2)))
    ingest.ingest_media(pair.vault_path, media_root)
    monkeypatch.setattr(timestamps, "now_utc", real)

    rep = vaultstatus.report(pair.vault_path,
                             now=datetime.now(timestamps.UTC) - timedelta(days=2))

    clock = [f for f in rep["findings"] if f["check"] == "clock"]
    assert any("ahead of the vault's clock" in f["message"] for f in clock), rep["findings"]
    assert any("behind its own last ingest" in f["message"] for f in clock)


def test_bundle_signed_long_before_the_last_ingest(pair: Pair, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's clock (or the vault's) is a month off: said, since dates rely on it."""
    real = timestamps.now_utc
    _ingest(pair, tmp_path / "a", [{}])
    media_root = stick(tmp_path / "b")
    monkeypatch.setattr(timestamps, "now_utc", lambda: timestamps.format_utc(
        datetime.now(timestamps.UTC) - timedelta(days=40)))  # while sealing only
    Chain(pair, outbox(media_root), last={"web": _last(pair)}).seal([conv("c9", ["x"])])
    monkeypatch.setattr(timestamps, "now_utc", real)
    ingest.ingest_media(pair.vault_path, media_root)

    clock = [f for f in vaultstatus.report(pair.vault_path)["findings"]
             if f["check"] == "clock"]
    assert [f["data"]["sequence"] for f in clock] == [2], clock
    assert "before the ingest that preceded it" in clock[0]["message"]
    assert clock[0]["level"] == "WARNING"


def _last(pair: Pair) -> tuple[int, str]:
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        return conn.execute("SELECT sequence, sha256 FROM bundles ORDER BY sequence DESC"
                            ).fetchone()


def test_vault_clock_set_back_is_reported(pair: Pair, tmp_path: Path) -> None:
    _ingest(pair, tmp_path, [{}])
    rep = vaultstatus.report(pair.vault_path,
                             now=datetime.now(timestamps.UTC) - timedelta(days=3))
    assert [f["check"] for f in rep["findings"]] == ["clock"]


def test_low_disk_by_configured_thresholds(pair: Pair) -> None:
    cfg = pair.vault.config
    text = cfg.read_text()
    cfg.write_text(text.replace("disk_free_warning_percent = 10",
                                "disk_free_warning_percent = 100"))
    assert _levels(vaultstatus.report(pair.vault_path)) == {"disk": "WARNING"}
    cfg.write_text(text.replace("disk_free_warning_percent = 10",
                                "disk_free_warning_percent = 100")
                   .replace("disk_free_critical_percent = 3",
                            "disk_free_critical_percent = 100"))
    assert vaultstatus.report(pair.vault_path)["exit_code"] == 2


def test_tampered_audit_log_is_critical(pair: Pair, tmp_path: Path) -> None:
    _ingest(pair, tmp_path, [{}])
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        conn.execute("UPDATE audit_log SET operator = 'someone else'")
    rep = vaultstatus.report(pair.vault_path)
    assert _levels(rep) == {"audit": "CRITICAL"} and rep["exit_code"] == 2


def test_bundles_left_in_staging_warn(pair: Pair, tmp_path: Path) -> None:
    from vault import staging

    media_root = stick(tmp_path / "stick")
    Chain(pair, outbox(media_root)).seal([conv("c1", ["x"])])
    staging.stage_from_media(pair.vault_path, media_root)
    assert _levels(vaultstatus.report(pair.vault_path)) == {"staging": "WARNING"}


def test_prometheus_textfile(pair: Pair, tmp_path: Path, cli: Any) -> None:
    _ingest(pair, tmp_path, [{}, {"sequence": 3, "prev": "ab" * 32}])
    prom = tmp_path / "chatvault.prom"

    res = cli("vault", "status", "--home", pair.vault_path, "--prometheus", prom)

    assert res.code == 1
    lines = prom.read_text().splitlines()
    samples = dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
    assert samples["chatvault_vault_status"] == "1"
    assert samples['chatvault_vault_source_last_sequence{source="web"}'] == "3"
    assert samples['chatvault_vault_source_missing_bundles{source="web"}'] == "1"
    assert samples['chatvault_vault_check_level{check="gaps"}'] == "1"
    assert float(samples["chatvault_vault_disk_free_bytes"]) > 0
    assert samples["chatvault_vault_conversations"] == "2"
    # whole numbers written whole: a Unix time in %g would be half an hour off
    stamp = samples['chatvault_vault_source_last_ingest_timestamp_seconds{source="web"}']
    assert "e" not in stamp and abs(float(stamp) - time.time()) < 600
    assert samples["chatvault_vault_disk_free_bytes"].isdigit()
    assert all(line.startswith(("# HELP chatvault_", "# TYPE chatvault_", "chatvault_"))
               for line in lines)


def test_other_modules_add_checks(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("vault_test_dsar_checks")

    def dsar_due(ctx: vaultstatus.Context) -> list[vaultstatus.Finding]:
        return [vaultstatus.Finding(vaultstatus.WARNING, "dsar", "DSAR 17 due in 3 days",
                                    {"case": 17})]

    mod.STATUS_CHECKS = [dsar_due]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vault_test_dsar_checks", mod)
    monkeypatch.setattr(vaultstatus, "CHECK_MODULES",
                        vaultstatus.CHECK_MODULES + ("vault_test_dsar_checks",))

    rep = vaultstatus.report(pair.vault_path)

    assert rep["findings"] == [{"level": "WARNING", "check": "dsar",
                                "message": "DSAR 17 due in 3 days", "data": {"case": 17}}]


def test_bad_config_names_key_and_line(pair: Pair, cli: Any) -> None:
    cfg = pair.vault.config
    cfg.write_text(cfg.read_text() + '\n[sources."web"]\nexpected_every_hour = 5\n')
    res = cli("vault", "status", "--home", pair.vault_path)
    assert res.code == 3  # UNKNOWN: it could not judge (2 would read as CRITICAL)
    assert "expected_every_hour" in res.err and "config.toml:" in res.err


# -- the secret key, the store's mode, the table (findings of a new-user trial) ---------

@pytest.mark.parametrize("case,said", [
    ("removed", "keys/secret.key is missing"),
    ("world-readable", "is readable by others (mode 0644"),
    ("damaged", "is damaged"),
    ("another-vault", "belongs to"),
    ("unreadable", "cannot be read"),
])
def test_secret_key_that_cannot_work_is_critical(pair: Pair, tmp_path: Path, cli: Any,
                                                 case: str, said: str) -> None:
    from vault import home

    secret = pair.vault.secret_key
    if case == "removed":
        secret.unlink()
    elif case == "world-readable":
        secret.chmod(0o644)
    elif case == "damaged":
        secret.write_text(secret.read_text().replace("Secret: ", "Secret: x"))
    elif case == "another-vault":
        other = home.create("vault", tmp_path / "other", "other-vault")
        secret.write_text(other.secret_key.read_text())
    else:
        secret.unlink()
        secret.mkdir()  # reading it fails (even for root)

    res = cli("vault", "status", "--home", pair.vault_path, "--json")

    assert res.code == 2, res.out
    [finding] = [f for f in res.json()["findings"] if f["check"] == "secret_key"]
    assert finding["level"] == "CRITICAL" and said in finding["message"]
    text = cli("vault", "status", "--home", pair.vault_path)
    assert "CRITICAL: keys/secret.key" in text.out and said in text.out
    if case == "world-readable":  # the mode was the only problem
        secret.chmod(0o600)
        assert cli("vault", "status", "--home", pair.vault_path).code == 0


def test_passphrase_protected_secret_key_is_fine(pair: Pair) -> None:
    from vault import keys

    ident = pair.vault.identity()
    secret = pair.vault.secret_key
    secret.unlink()
    keys.write_secret(secret, keys.secret_key_text(ident, b"correct horse"))

    rep = vaultstatus.report(pair.vault_path)

    assert rep["findings"] == [] and rep["status"] == "OK"


def test_store_readable_by_others_warns(pair: Pair, tmp_path: Path) -> None:
    _ingest(pair, tmp_path, [{}])
    db = pair.vault_path / store.FILE_NAME
    conn = store.open_store(db)  # -wal and -shm exist while a connection is open
    try:
        conn.execute("SELECT count(*) FROM bundles").fetchone()
        modes = {p.name: p.stat().st_mode & 0o777 for p in pair.vault_path.glob("store.db*")}
        assert modes == {"store.db": 0o600, "store.db-wal": 0o600, "store.db-shm": 0o600}
        assert vaultstatus.report(pair.vault_path)["findings"] == []

        db.chmod(0o644)
        rep = vaultstatus.report(pair.vault_path)
    finally:
        conn.close()

    assert _levels(rep) == {"store_mode": "WARNING"} and rep["exit_code"] == 1
    [f] = rep["findings"]
    assert "store.db (0644)" in f["message"] and f"chmod 600 {db}*" in f["message"]


def test_table_lines_up_and_counts_quarantine_per_source(pair: Pair, tmp_path: Path,
                                                         cli: Any) -> None:
    from conftest import make_pair

    media_root = stick(tmp_path / "stick")
    box = outbox(media_root)
    ch = Chain(pair, box)
    ch.seal([conv("c1", ["one"])], source="web")
    ch.seal([conv("c2", ["two"])], source="a-much-longer-source-name-than-the-column")
    broken = ch.seal([conv("c3", ["three"])], source="web")
    data = bytearray(broken.path.read_bytes())
    data[len(data) // 2] ^= 4
    broken.path.write_bytes(bytes(data))
    stranger = make_pair(tmp_path / "stranger")
    Chain(stranger, box).seal([conv("s1", ["x"])], source="web", sequence=7, prev="ab" * 32)
    (box / "holiday-photos.cvb").write_bytes(b"JFIF" * 100)
    ingest.ingest_media(pair.vault_path, media_root)

    res = cli("vault", "status", "--home", pair.vault_path, "--json")
    text = cli("vault", "status", "--home", pair.vault_path)

    rep = res.json()
    per = {s["source"]: s["quarantined"] for s in rep["sources"]}
    assert per == {"web": 2, "a-much-longer-source-name-than-the-column": 0}
    assert rep["quarantined_unknown_source"] == 1
    assert len([f for f in rep["findings"] if f["check"] == "quarantine"]) == 3
    lines = text.out.splitlines()
    table = lines[1:lines.index(next(ln for ln in lines if ln.startswith("store ")))]
    header = table[0]
    starts = [header.index(h) for h in ("last seq", "last ingest", "gaps", "forks",
                                        "quarantined")]
    for row in table[1:]:
        # every cell ends before the next column starts (two spaces between columns)
        assert all(row[s - 2:s] == "  " for s in starts), (header, row)
        assert row[header.index("quarantined") + len("quarantined") - 1] != " "
    web = next(r for r in table if r.startswith("web "))
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", web), "time to the second"
    assert web.split()[-1] == "2"
    assert next(r for r in table if r.startswith("(unknown source)")).split()[-1] == "1"
    prom = tmp_path / "m.prom"
    cli("vault", "status", "--home", pair.vault_path, "--prometheus", prom)
    assert 'chatvault_vault_source_quarantined_bundles{source="web"} 2' in prom.read_text()


def test_quarantined_file_resolved_by_hand(pair: Pair, tmp_path: Path, cli: Any) -> None:
    media_root = stick(tmp_path / "stick")
    (outbox(media_root) / "holiday-photos.cvb").write_bytes(b"JFIF" * 100)
    ingest.ingest_media(pair.vault_path, media_root)
    res = cli("vault", "status", "--home", pair.vault_path)
    assert res.code == 1 and "'chatvault vault resolve holiday-photos.cvb'" in res.out

    done = cli("vault", "resolve", "holiday-photos.cvb", "--note", "the photos were copied "
               "by mistake", "--home", pair.vault_path, "--json")

    assert done.code == 0
    [entry] = done.json()["resolved"]
    assert (entry["file"], entry["code"]) == ("holiday-photos.cvb", "bad_magic")
    assert cli("vault", "status", "--home", pair.vault_path).code == 0
    assert (pair.vault_path / entry["kept"]).exists(), "the evidence stays"
    with store.open_store(pair.vault_path / store.FILE_NAME) as conn:
        assert conn.execute("SELECT resolution FROM quarantine").fetchone()[0] == \
            "by hand: the photos were copied by mistake"
        assert conn.execute("SELECT target FROM audit_log WHERE action = "
                            "'quarantine-resolve'").fetchall() == [("file:holiday-photos.cvb",)]
    again = cli("vault", "resolve", "holiday-photos.cvb", "--home", pair.vault_path)
    assert again.code == 2 and "nothing in quarantine" in again.err


def test_staged_bundles_of_a_running_ingest_are_not_called_leftovers(
        pair: Pair, tmp_path: Path, cli: Any) -> None:
    import fcntl
    import os

    from vault import ingestlock, staging

    sealed = Chain(pair, tmp_path / "made").seal([conv("c1", ["hello"])])
    staging.stage_files(pair.vault_path, [sealed.path])
    idle = cli("vault", "status", "--home", pair.vault_path, "--json").json()
    assert [f["check"] for f in idle["findings"] if f["check"] == "staging"] == ["staging"]
    assert idle["ingest_running"] is False

    fd = os.open(pair.vault_path / ingestlock.FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the daemon holds it while it ingests
        busy = cli("vault", "status", "--home", pair.vault_path, "--json").json()
        text = cli("vault", "status", "--home", pair.vault_path)
    finally:
        os.close(fd)
    assert busy["ingest_running"] is True
    assert not [f for f in busy["findings"] if f["check"] == "staging"]
    assert "an ingest is running" in text.out
