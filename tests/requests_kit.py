"""Helpers shared by the request tests (no tests here).

A :class:`World`: the GDPR kit's vault (the built-in sample ingested as
source ``sample``), IT staff on the exporter home (trusted by the vault as
``requester``), two DPO homes of the new ``requester`` kind (trusted as
``dpo``, and trusting each other as ``dpo`` so that each can read what the
other asks), and a fresh folder standing for the stick.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gdpr_kit import Vault, sample_vault
from vault import answers, ask, home, media, requests, signed, store, timestamps
from vault.home import Home

JONAS = "jonas.weber@example.net"  # customer in web-1002 only
ANA = "ana.example@example.org"  # customer in web-1004 only
MARA = "mara.quint@example.org"  # customer in web-1001, web-1005; mentioned in web-1003


def trust(who: Home, other: Home, role: str) -> None:
    t = who.trust()
    t.trust(other.public_key.read_text(), role)
    t.save()


@dataclass
class World:
    vault: Vault
    it: Home
    dpo: Home
    dpo2: Home
    stick: Path

    @property
    def vlt(self) -> Home:
        return self.vault.pair.vault

    def ask(self, who: Home, action: str, stick: Path | None = None,
            **params: Any) -> dict[str, Any]:
        days = params.pop("days", requests.DEFAULT_DAYS)
        return ask.submit(who.path, stick or self.stick, action, params, days=days)

    def answer(self, stick: Path | None = None) -> list[Any]:
        """What the daemon does once the stick is mounted read-write."""
        return requests.answer_media(self.vlt.path, stick or self.stick)

    def answers_dir(self, stick: Path | None = None) -> Path:
        return (stick or self.stick) / media.ROOT / media.ANSWERS

    def requests_dir(self, stick: Path | None = None) -> Path:
        return (stick or self.stick) / media.ROOT / media.REQUESTS

    def answer_bodies(self, stick: Path | None = None) -> dict[str, dict[str, Any]]:
        """Every answer on the stick, verified as the online side verifies them."""
        return {p.name: answers.verify_answer(p, self.it.trust()).body
                for p in sorted(self.answers_dir(stick).glob("*.answer.json"))}

    def four_eyes(self) -> None:
        cfg = self.vlt.config
        cfg.write_text(cfg.read_text().replace("four_eyes = false", "four_eyes = true"))

    def snapshot(self) -> dict[str, Any]:
        """Everything a request could change in the store (the audit log aside)."""
        with self.vault.conn() as conn:
            out = store.dump(conn)
            for table in ("dsar_cases", "dsar_subjects", "erasures", "erasure_subjects",
                          "tombstones", "legal_holds"):
                out[table] = [list(r) for r in conn.execute(f"SELECT * FROM {table}")]
        return out

    def rows(self) -> dict[str, dict[str, Any]]:
        with self.vault.conn() as conn:
            cur = conn.execute("SELECT * FROM requests")
            names = [d[0] for d in cur.description]
            return {r[0]: dict(zip(names, r)) for r in cur}

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.vault.conn() as conn:
            from vault import audit

            found = audit.entries(conn, 1000, action=action)
        for e in found:
            e["detail"] = json.loads(e["detail"]) if e["detail"] else None
        return found


def world(root: Path) -> World:
    v = sample_vault(root)
    pair = v.pair
    dpo = home.create("requester", root / "dpo", "dpo-anna")
    dpo2 = home.create("requester", root / "dpo2", "dpo-bert")
    trust(pair.vault, pair.exporter, "requester")
    for who in (dpo, dpo2):
        trust(pair.vault, who, "dpo")
        trust(who, pair.vault, "vault")
    trust(dpo, dpo2, "dpo")
    trust(dpo2, dpo, "dpo")
    stick = root / "stick-requests"
    stick.mkdir()
    return World(v, pair.exporter, dpo, dpo2, stick)


def resign(path: Path, who: Home, **changes: Any) -> dict[str, Any]:
    """The request at ``path`` with ``changes`` to its body, signed again by ``who``."""
    doc = signed.load(path)
    body = {**doc["body"], **changes}
    new = signed.sign(body, who.identity())
    path.write_bytes(signed.dumps(new))
    return new


def past(days: int) -> str:
    return timestamps.format_utc(datetime.now(timestamps.UTC) - timedelta(days=days))


def copy_request(w: World, info: dict[str, Any], target: Path) -> Path:
    """A copy of a request file on another stick (as a replay would come)."""
    folder = target / media.ROOT / media.REQUESTS
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(info["path"], folder / info["file"]))
