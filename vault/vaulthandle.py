"""An open vault: its home, configuration, store and identifier key, for one command.

Every GDPR operation (subject find, search, DSAR, erasure, holds,
restrictions, retention) works on a :class:`VaultHandle`; :func:`open_vault`
makes one and refuses a store older than the vault's state file
(:mod:`vault.statecounts`), so no command answers from a store that forgot
erasures.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from vault import statecounts


@dataclass
class VaultHandle:
    """What every GDPR operation needs: home, config, store, identifier key."""

    home: Any
    cfg: Any
    conn: sqlite3.Connection
    key: Any

    @property
    def region(self) -> str | None:
        return self.cfg.phone_region

    def target(self, pairs: Iterable[tuple[str, str]]) -> str:
        """Audit-log target for identifiers: keyed hashes, never the values."""
        from vault.identifierkey import PURPOSE_AUDIT

        return ",".join(f"{k}:{self.key.hash(PURPOSE_AUDIT, k, v)[:32]}" for k, v in pairs)

    def require_source(self, source: str | None, what: str) -> None:
        """:meth:`vault.vaultconfig.VaultConfig.require_source` on this vault's store."""
        self.cfg.require_source(self.conn, source, what)


class _Open:
    def __init__(self, home: Any, check_state: bool) -> None:
        self.home = home
        self.check_state = check_state
        self.handle: VaultHandle | None = None

    def __enter__(self) -> VaultHandle:
        from vault import store, vaultconfig
        from vault.home import Home
        from vault.identifierkey import load_key

        path = Home(Path(self.home)).require().path
        cfg = vaultconfig.load(path)
        conn = store.open_store(path / store.FILE_NAME)
        try:
            if self.check_state:
                statecounts.require_current(path, conn)
            key = load_key(path, conn)
        except BaseException:
            conn.close()
            raise
        self.handle = VaultHandle(path, cfg, conn, key)
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.conn.close()


def open_vault(home: Any, *, check_state: bool = True) -> _Open:
    """``with open_vault(home) as v:`` the vault's config, store and key.

    A store older than the state file is refused
    (:func:`vault.statecounts.require_current`); only a rebuild, which is
    making it current, passes ``check_state=False``.
    """
    return _Open(home, check_state)
