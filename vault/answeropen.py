"""Opening a ``done`` answer's files into the collect folder, each checked first.

A restore answer's bundles are opened as :mod:`vault.restoreopen` writes
them, a DSAR answer's package as :func:`vault.dsarpack.unseal` does, into
``OUT/<action>-<id>.<vault>/``. Before any is opened, every file the signed
answer lists must be a plain file in ``answers/`` with the SHA-256 the answer
gives; the home's identity is unlocked only once one is to be opened.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault import atomic, keys, requests
from vault.errors import InputRejected, UsageError
from vault.home import Home

if TYPE_CHECKING:
    from vault.answers import Answer

_SEALED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.cvb")  # fullmatch


class Opener:
    """Opens done answers into ``out``; the identity is unlocked only when needed."""

    def __init__(self, h: Home, trust: Any, out: Path, native: bool,
                 passphrase_file: Path | None) -> None:
        self.h, self.trust, self.out, self.native = h, trust, out, native
        self.passphrase_file = passphrase_file
        self._identity: keys.Identity | None = None

    @property
    def identity(self) -> keys.Identity:
        if self._identity is None:
            self._identity = self.h.identity(self.passphrase_file)
        return self._identity

    def open(self, ans: Answer, eff: dict[str, Any], folder: Path) -> Path | None:
        files = checked_files(eff, folder, ans.path)
        if not files:
            return None
        dest = self.out / f"{eff['action']}-{eff['request_id']}.{ans.vault.replace('-', '')[:9]}"
        if os.path.lexists(dest):
            raise UsageError(f"{dest} already exists; collect into another --out folder")
        if eff["action"] == "restore":
            from vault import restoreopen

            restoreopen.open_bundles(files, self.identity, self.trust, dest, native=self.native)
            return dest
        from vault import dsarpack

        work = self.out / f".dsar-open{atomic.TMP_MARK}{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            opened = dsarpack.unseal(files[0], self.identity, self.trust, work)
            os.replace(opened, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return dest


def checked_files(eff: dict[str, Any], folder: Path, where: Path) -> list[Path]:
    """The answer's files in ``answers/``, each with the SHA-256 it was signed with."""
    out = []
    for item in eff.get("files") or []:
        name = item.get("file") if isinstance(item, dict) else None
        path = folder / name if isinstance(name, str) and _SEALED.fullmatch(name) else None
        try:
            plain = path is not None and stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            plain = False
        if path is None or not plain:
            raise InputRejected(f"answer file {str(name)[:80]!r} is missing from the media "
                                "or not a plain file", path=where)
        if requests.sha256_file(path) != item.get("sha256"):
            raise InputRejected(f"{name} differs from what the vault wrote (damaged media?)",
                                path=where)
        out.append(path)
    return out
