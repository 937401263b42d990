"""The vocabulary of failures, and the exit code each one maps to.

Every failure an operator can meet is a subclass of :class:`ChatvaultError`.
Each class carries a stable ``code`` (printed in ``--json`` output and used
by scripts) and an exit code shared by every command:

====  =====================================================================
code  meaning
====  =====================================================================
0     success
1     anything else (an internal error is a bug: please report it)
2     usage: the command line itself is wrong
3     input rejected: a bundle, receipt, request or export file failed
      verification or cannot be read (integrity, authenticity, format,
      not sealed to this key)
4     refused by policy: unknown or revoked signer, fork, legal hold
5     media or file system problem: missing, full, read-only, I/O error
====  =====================================================================

Status commands are the exception: they exit 0 / 1 / 2 for OK / WARNING /
CRITICAL, as monitoring plugins do (see :mod:`vault.status`).

Messages name the file and say what is wrong, in one line, and where there
is something to do about it, what to do next.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_POLICY = 4
EXIT_MEDIA = 5


class ChatvaultError(Exception):
    """Base of every failure chatvault reports to an operator."""

    exit_code = EXIT_OTHER
    code = "error"

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.detail = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def as_dict(self) -> dict[str, object]:
        """The stable machine-readable form used by ``--json`` output."""
        out: dict[str, object] = {"error": self.code, "message": self.detail}
        if self.path:
            out["path"] = self.path
        out["exit_code"] = self.exit_code
        return out


# -- usage (exit 2) ---------------------------------------------------------

class UsageError(ChatvaultError):
    exit_code = EXIT_USAGE
    code = "usage"


class NotAHome(UsageError):
    """``--home`` (or ``CHATVAULT_HOME``) names no chatvault home: the same words everywhere."""

    code = "not_a_home"

    def __init__(self, home: str | Path) -> None:
        super().__init__("is not a chatvault home (no keys/public.key); create it with "
                         "'chatvault init' or pass --home", path=home)


class NotRegularFile(UsageError):
    """An output named a device, FIFO, socket, link or folder: never replaced by a file."""

    code = "not_regular_file"


class PassphraseNeeded(ChatvaultError):
    """A passphrase-protected key was needed and none was given: a usage matter."""

    exit_code = EXIT_USAGE
    code = "passphrase_needed"


class ConfigError(ChatvaultError):
    """A config file that cannot be used; names the key and line."""

    exit_code = EXIT_USAGE
    code = "config"


class QueryFailed(ChatvaultError):
    """A search that could not be answered: never to be shown as "no results"."""

    code = "query_failed"


# -- input rejected (exit 3) ------------------------------------------------

class InputRejected(ChatvaultError):
    exit_code = EXIT_REJECTED
    code = "rejected"


class BadMagic(InputRejected):
    code = "bad_magic"


class UnsupportedVersion(InputRejected):
    code = "unsupported_version"


class MalformedHeader(InputRejected):
    code = "malformed_header"


class BadSignature(InputRejected):
    code = "bad_signature"


class NotARecipient(InputRejected):
    code = "not_a_recipient"


class CorruptPayload(InputRejected):
    code = "corrupt_payload"


class Truncated(InputRejected):
    code = "truncated"


class TrailingData(InputRejected):
    code = "trailing_data"


class Oversize(InputRejected):
    code = "oversize"


class InvalidRecord(InputRejected):
    """A record (one JSONL line, one export entry) that is not valid."""

    code = "invalid_record"


class StoreBusy(ChatvaultError):
    """Another process (an ingest) held the store's write lock for the whole wait."""

    code = "store_busy"


class IngestFailed(InputRejected):
    """A verified bundle the vault failed on unexpectedly (a bug): quarantined, not lost."""

    code = "ingest_failed"


class UnreadableExport(InputRejected):
    """An export file in which nothing can be read in the chosen format."""

    code = "unreadable_export"


class BadKeyFile(InputRejected):
    code = "bad_key_file"


class BadPassphrase(InputRejected):
    code = "bad_passphrase"


class AuditChainBroken(InputRejected):
    """``audit verify``: an entry of the hash chain was changed, removed or reordered."""

    code = "audit_broken"


class BadDocument(InputRejected):
    """A signed document (receipt, request, answer, report) that fails checks."""

    code = "bad_document"


# -- refused by policy (exit 4) ---------------------------------------------

class PolicyRefused(ChatvaultError):
    exit_code = EXIT_POLICY
    code = "refused"


class UntrustedSigner(PolicyRefused):
    code = "untrusted_signer"


class RevokedSigner(PolicyRefused):
    code = "revoked_signer"


class WrongRole(PolicyRefused):
    code = "wrong_role"


class ForkDetected(PolicyRefused):
    code = "fork"


class LegalHoldBlocks(PolicyRefused):
    code = "legal_hold"


class StateRegression(PolicyRefused):
    """A state file would be replaced by one that remembers fewer erasures or purges."""

    code = "state_regression"


class HomeExists(PolicyRefused):
    code = "home_exists"


class DaemonRunning(PolicyRefused):
    """A second ``vault daemon`` on one home: it would unmount the first one's media."""

    code = "daemon_running"


# -- media and file system (exit 5) -----------------------------------------

class MediaError(ChatvaultError):
    exit_code = EXIT_MEDIA
    code = "media"


class MediaMissing(MediaError):
    code = "media_missing"


class MediaFull(MediaError):
    code = "media_full"


class MediaReadOnly(MediaError):
    code = "media_read_only"


class MediaIOError(MediaError):
    code = "media_io"


class MediaUnsafe(MediaError):
    """A folder chatvault uses on media is a link or another kind of file: never followed."""

    code = "media_unsafe"


class StoreMissing(MediaError):
    """A vault home whose ``store.db`` is gone: never replaced by an empty one in silence."""

    code = "store_missing"


class StoreDamaged(MediaError):
    """SQLite found the store's file damaged (``database disk image is malformed``)."""

    code = "store_damaged"


def most_severe(codes: list[int]) -> int:
    """The exit code a many-item command ends with: the most severe one seen.

    Severity is not numeric order: a media problem (5) outranks a policy
    refusal (4), which outranks a rejected input (3); 1 (internal) outranks
    all, since it means we do not know what happened.
    """
    order = [EXIT_OK, EXIT_USAGE, EXIT_REJECTED, EXIT_POLICY, EXIT_MEDIA, EXIT_OTHER]
    worst = EXIT_OK
    for c in codes:
        if order.index(c) > order.index(worst):
            worst = c
    return worst
