"""The online side of requests: ask, approve, collect the answers, see what still waits.

Any home can ask (``chatvault init requester`` makes one for a DPO; IT staff
use their exporter home) once it trusts the vault's key (role ``vault``):
the parameters are sealed to every vault it trusts, and answers are checked
against those keys. Requests are documented in :mod:`vault.requests`.

The home remembers what it asked and what came back in its request register
(:mod:`vault.requestregister`, which also says what still waits).

**collect** verifies every ``*.answer.json`` on the media against the
trusted vault keys; answers to requests this home did not make are left
alone. A ``done`` restore or DSAR answer is opened (every file checked
against the SHA-256 the signed answer gives) into ``OUT/<action>-<id>.<vault>/``:
restore sets as :mod:`vault.restoreopen` writes them, DSAR packages as
:func:`vault.dsarpack.unseal` does. Unless ``keep``, what was collected is
then removed from the stick, and so is each request every vault addressed
has answered for good (a *pending* erasure request stays: it must go back
to the vault). An answer that fails verification, or whose files are
missing or altered, is reported (exit 3) and left where it is.

Only a verified answer with the request's digest settles it. A refusal of a
file that did not verify (``verified`` false) may claim one of this home's
ids (anyone can copy a request and break its signature): it is reported
(exit 3) and settles, overrides and blocks nothing. A ``done`` answer is
collected even when another answer came first; nothing is removed from the
stick that was not collected here (files sealed to another key, the answer
to another request with the same id).

Anything else in ``answers/`` (a symbolic link, a FIFO, a folder, a name no
vault writes, an answer file too large to be one) is never followed or read:
it is listed in the report's ``ignored`` and makes collect exit 3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault import atomic, media, requests, signed, timestamps
from vault.answeropen import Opener
from vault.errors import EXIT_OK, EXIT_REJECTED, BadDocument, ChatvaultError
from vault.home import Home
# the register is read and written here; load_state and status stay reachable as before
from vault.requestregister import FINAL, load_state, state, status  # noqa: F401

log = logging.getLogger(__name__)



# -- answers as the online side reads them ----------------------------------------

@dataclass(frozen=True)
class Answer:
    path: Path
    body: dict[str, Any]
    vault: str  # fingerprint of the verified signer

    @property
    def unverified(self) -> bool:
        """A refusal of a file that did not verify (answers before ``verified``: by reason)."""
        if "verified" in self.body:
            return self.body["verified"] is False
        return self.body.get("status") == "refused" and \
            self.body.get("reason") in requests.UNVERIFIED

    @property
    def effective(self) -> dict[str, Any]:
        """The answer itself, or for a replay notice the first answer it carries."""
        first = self.body.get("first_answer")
        return first if isinstance(first, dict) else self.body


def verify_answer(path: Path, trust: Any) -> Answer:
    """Load an answer and check it is signed by a vault this home trusts."""
    doc = signed.load(path)
    signers = signed.verify(doc, trust, "vault", requests.ANSWER_KIND, str(path))
    for body in (doc["body"], doc["body"].get("first_answer")):
        if body is None:
            continue
        if not isinstance(body, dict) or body.get("status") not in requests.STATUSES:
            raise BadDocument("answer without a known status", path=path)
        if not isinstance(body.get("files", []), list) or not isinstance(
                body.get("counts", {}), dict):
            raise BadDocument("answer fields malformed", path=path)
        rid = body.get("request_id")
        if rid is not None and not requests.valid_id(rid):
            raise BadDocument("answer names no valid request id", path=path)
        if body.get("verified", True) not in (True, False):
            raise BadDocument("answer's 'verified' is not true or false", path=path)
    return Answer(path, doc["body"], signers[0].fingerprint)


# -- collecting -------------------------------------------------------------------------

@dataclass
class Collected:
    """What became of one answer file on the media."""

    file: str
    result: str  # opened | recorded | notice | already | not_ours | rejected
    request_id: str | None = None
    action: str | None = None
    vault: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    out: str | None = None
    error: dict[str, Any] | None = None
    unverified: bool = False  # a notice: a file claimed this request and did not verify

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    items: list[Collected] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: entries of ``answers/`` passed over unread, in words (:func:`_ignored`)
    ignored: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        bad = any(c.result == "rejected" or c.unverified for c in self.items)
        return EXIT_REJECTED if bad or self.ignored else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"answers": [c.as_dict() for c in self.items], "removed": self.removed,
                "ignored": self.ignored, "exit_code": self.exit_code}


def collect(home: Path, media_root: Path, out: Path, *, keep: bool = False,
            native: bool = False, passphrase_file: Path | None = None) -> Report:
    """Verify, open and record every answer to this home's requests (module docstring)."""
    h = Home(Path(home)).require()
    trust = h.trust()
    folder = media.folder(Path(media_root), media.ANSWERS)
    report = Report()
    settled: list[tuple[Path, dict[str, Any]]] = []
    atomic.private_dir(out)
    opener = Opener(h, trust, Path(out), native, passphrase_file)
    found, odd, big = media.listing(folder, requests.ANSWER_SUFFIX, signed.MAX_DOCUMENT)
    report.ignored = _ignored(odd, big)
    with state(h.path) as known:
        for path in found:
            item, tidy = _one(path, folder, known["requests"], trust, opener)
            report.items.append(item)
            if tidy is not None:
                settled.append((path, tidy))
        if not keep:
            report.removed = _tidy(Path(media_root), folder, settled, known["requests"])
    return report


def _ignored(odd: list[tuple[Path, str]], big: list[Path]) -> list[str]:
    """What ``answers/`` holds that no vault wrote there, or no answer can be: never read.

    A link, FIFO, folder or strange name is someone else's doing, and an
    answer above the bound of a signed document cannot be one; each is
    reported (exit 3) rather than passed over in silence.
    """
    out = [media.describe_odd(path, why) for path, why in odd]
    return out + [media.describe_odd(path, f"larger than {signed.MAX_DOCUMENT} bytes, too "
                                           "large to be an answer") for path in big]


def _one(path: Path, folder: Path, asked: dict[str, Any], trust: Any,
         opener: Opener) -> tuple[Collected, dict[str, Any] | None]:
    """One answer file: its report line, and (when collected) what to tidy away.

    The second value lists the answer file's companions to remove: ``files``
    only of an answer whose files were opened here (now or before).
    """
    try:
        ans = verify_answer(path, trust)
    except ChatvaultError as exc:
        return Collected(path.name, "rejected", error=exc.as_dict()), None
    if ans.unverified:
        return _unverified(ans, asked, opener.h, folder)
    body, eff = ans.body, ans.effective
    entry = asked.get(body.get("request_id") or "")
    item = Collected(path.name, "recorded", body.get("request_id"), body.get("action"),
                     ans.vault, eff["status"], eff.get("reason"), eff.get("message"))
    if entry is None:
        item.result = "not_ours"
        return item, None
    if eff.get("request_digest") != entry["digest"]:
        # another request with this id (another home's, or a reused id): its answer
        item.result, item.status, item.reason = "notice", body["status"], body.get("reason")
        return item, None
    seen = entry["answers"].get(ans.vault)
    if seen and seen["status"] in FINAL and (eff["status"] != "done" or
                                             seen["status"] == "done"):
        item.result = "already" if body is eff else "notice"
        if body is not eff:
            item.status, item.reason, item.message = "refused", "replay", body.get("message")
        opened = seen["status"] == "done" and seen.get("out")
        return item, eff if opened else {"files": []}
    if body is not eff and not all((folder / str(f.get("file"))).is_file()
                                   for f in eff.get("files") or [] if isinstance(f, dict)):
        # a replay notice whose first answer's files went out on another stick: that
        # stick's answer is the one to collect
        item.result, item.status, item.reason = "notice", "refused", "replay"
        item.message = f"{body.get('message')}; the first answer is on another stick"
        return item, {"files": []}
    mine = entry["answer_to"] == opener.h.public().fingerprint
    try:
        dest = opener.open(ans, eff, folder) if eff["status"] == "done" and mine else None
    except ChatvaultError as exc:
        item.result, item.error = "rejected", exc.as_dict()
        # The vault answers a request once (a replay is refused): files damaged on the
        # way are only had again by a new request. Said here and by 'request status'.
        item.message = ("the vault does not answer the same request twice: make a new "
                        "request, then 'chatvault request resolve "
                        f"{str(body.get('request_id'))[:16]}' this one")
        entry["damaged"] = {"vault": ans.vault, "at": timestamps.now_utc(),
                            "error": exc.detail, "file": path.name}
        return item, None
    if dest is not None:
        item.result, item.out = "opened", str(dest)
    elif eff["status"] == "done" and not mine and eff.get("files"):
        item.message = (f"{eff.get('message')}; sealed to {entry['answer_to']}, not to this "
                        "home: its files stay on the media for that key's holder")
    got: dict[str, Any] = {
        "status": eff["status"], "reason": eff.get("reason"), "message": eff.get("message"),
        "at": eff.get("at"), "collected_at": timestamps.now_utc(), "out": item.out,
        **{k: eff[k] for k in ("case_id", "erasure_id", "restore_id", "counts") if k in eff}}
    entry["answers"][ans.vault] = got
    _keep_copy(opener.h.path, path)
    return item, eff if dest is not None else {"files": []}


def _unverified(ans: Answer, asked: dict[str, Any], h: Home,
                folder: Path) -> tuple[Collected, dict[str, Any] | None]:
    """A refusal of a file claiming to be this home's request: reported, kept, nothing else.

    A copy goes to ``H/state/answers/`` and the notice leaves the stick; one
    about a file that claims none of this home's requests is left alone.
    When the refused file is still on the stick, byte for byte the one this
    home signed, the notice says so: the vault does not trust this key (yet),
    which is no tampering and is mended at the vault.
    """
    home = h.path
    body = ans.body
    rid = body.get("claimed_request_id", body.get("request_id"))
    item = Collected(ans.path.name, "not_ours", rid, body.get("claimed_action"), ans.vault,
                     "refused", body.get("reason"), body.get("message"))
    if not requests.valid_id(rid) or rid not in asked:
        return item, None
    item.result, item.unverified = "notice", True
    if _signed_here(folder, asked[rid], body.get("request_sha256"), h):
        role = requests.ROLE_FOR.get(asked[rid].get("action"), "dpo")
        mend = (f"have the vault's operator trust this home's key ('chatvault keys trust "
                f"PUBFILE --role {role}'), then carry the stick again: the request stays on "
                "it" if body.get("reason") in ("untrusted", "wrong_role") else
                "the request stays on the stick")
        item.message = (f"the vault refused this home's own request as signed here "
                        f"({body.get('message')}); nothing was done: {mend}")
        _keep_copy(home, ans.path)
        return item, {"files": []}
    item.message = (f"{body.get('request_file')!r} (sha256 "
                    f"{str(body.get('request_sha256'))[:16]}...) claimed to be this request "
                    f"and did not verify ({body.get('message')}); it settles nothing: if "
                    "nobody here wrote it, someone tampered with the stick")
    _keep_copy(home, ans.path)
    return item, {"files": []}


def _signed_here(folder: Path, entry: dict[str, Any], sha: Any, h: Home) -> bool:
    """The refused file is on the stick, has ``sha`` and carries this home's request as signed."""
    path = folder.parent / media.REQUESTS / str(entry.get("file"))
    try:
        if not isinstance(sha, str) or requests.sha256_file(path) != sha:
            return False
        doc = signed.load(path)
        first = {"body": doc["body"], "signatures": doc["signatures"][:1]}
        signed.verify(first, _OwnKey(h.public()), "any", requests.KIND, path.name)
    except (ChatvaultError, OSError, KeyError, TypeError):
        return False
    return requests.digest(doc["body"]) == entry.get("digest")


class _OwnKey:
    """A trust store of this home's key alone, for :func:`signed.verify`."""

    def __init__(self, own: Any) -> None:
        self.own = own

    def require(self, key: bytes, role: str, what: str = "signer") -> Any:
        if bytes(key) != self.own.sign_pk:
            raise BadDocument(f"{what} is not this home's key")
        return self.own


def _keep_copy(home: Path, path: Path) -> None:
    """A copy of each collected answer stays in ``H/state/answers/``: proof of what came back."""
    copies = home / "state" / "answers"
    copies.mkdir(mode=0o700, exist_ok=True)
    try:
        data = atomic.read_small(path, signed.MAX_DOCUMENT, follow=False, refuse=BadDocument)
    except (OSError, BadDocument) as exc:  # changed on the stick since it was verified
        log.warning("%s: no copy kept in %s (%s)", path, copies, exc)
        return
    atomic.write_bytes(copies / path.name, data, mode=0o600)


def _tidy(media_root: Path, folder: Path, settled: list[tuple[Path, dict[str, Any]]],
          asked: dict[str, Any]) -> list[str]:
    """Remove collected answers (and their files) and requests every vault has answered."""
    gone: list[Path] = []
    for path, eff in settled:
        names = [f.get("file") for f in eff.get("files") or [] if isinstance(f, dict)]
        for name in [path.name, *[n for n in names if isinstance(n, str)]]:
            gone += _remove(folder / name)
    requests_dir = media.folder(media_root, media.REQUESTS)
    for rid, entry in asked.items():
        done = [v for v in entry["vaults"] if entry["answers"].get(v, {}).get("status") in FINAL]
        request = requests_dir / entry["file"]
        if len(done) < len(entry["vaults"]) or not request.is_file():
            continue
        try:
            if requests.digest(signed.load(request)["body"]) == entry["digest"]:
                gone += _remove(request)
        except BadDocument:
            continue
    return [str(p) for p in gone]


def _remove(path: Path) -> list[Path]:
    if path.is_symlink() or not path.is_file():
        return []
    try:
        path.unlink()
    except OSError as exc:
        raise atomic.media_error(exc, path) from exc
    return [path]
