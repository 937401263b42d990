"""What a DSAR package shows of one conversation: others redacted, the subject kept.

Redaction works on the canonical record of each conversation:

* participants: the subject's own fields are kept; another customer
  becomes ``[other customer]`` (id ``other-customer-N``) with no contact
  fields; an agent keeps the name unless ``[dsar] redact_agent_names``
  (then ``Agent 1``, id ``agent-1``); contact fields of anyone but the
  subject are dropped;
* every field shown (title, channel, status, message and alt text,
  attachment names): every e-mail address and phone number that is not
  the subject's is replaced (``[e-mail redacted]``, ``[phone redacted]``),
  and so is every other customer's (and, with the switch, agent's) full
  name, participant id, platform id and customer id where written;
* conversation and message ids are never searched for what looks like an
  address or a number (a Telegram chat id is ten digits): only another
  participant's e-mail, phone (as written, E.164 or its digits), name or
  ids, written whole, are replaced there;
* the subject's own identifiers are those the case gives and those
  linked to them (:func:`vault.subjectlinks.linked`: held on the same
  participant record in a conversation found); linked ones are kept where
  written and listed in the package's ``subject.linked``, but never
  searched with nor used to tell who the subject is; a link that is also
  on another person's record, or all links when the identifiers given
  lead to different people (:func:`vault.subjectlinks.own`), are treated
  as anyone else's: redacted, not listed.

Fields the package does not show are not exported (:mod:`vault.dsarpack`
leaves out ``tags`` and the platforms' ``extra`` objects).
"""

from __future__ import annotations

import re
from typing import Any

from vault import redaction, tombstones

_MARK = {"email": "[e-mail redacted]", "phone": "[phone redacted]",
         "phone_unparsed": "[phone redacted]"}
#: ids: only others' known identifiers, written whole, are replaced there
_ID_FIELDS = frozenset(("conversation_id", "message.id"))
_CONTACT = ("email", "phone", "customer_id", "platform_ids", "session")
#: participant ids some exports use that are words, not identifiers: never replaced in text
_GENERIC_IDS = frozenset(("customer", "agent", "user", "visitor", "client", "guest",
                          "support", "admin", "operator", "system", "unknown", "contact"))


class Redactor:
    """Redacts one conversation for the subject; records what it did, never the values.

    Others are known from the participants. Another customer's (and, with
    ``redact_agent_names``, an agent's) name, participant id, platform ids
    and customer id are replaced wherever written as whole words, in every
    field the package shows (:meth:`field`): title, channel, status,
    conversation and message ids, message text, attachment names and alt
    text. So is every e-mail address and phone number that is not the
    subject's, also when URL- or HTML-encoded (:mod:`vault.redaction`).
    """

    def __init__(self, conv: dict[str, Any], subject_values: set[str], region: str | None,
                 agent_names: bool, log: list[dict[str, Any]],
                 linked: frozenset[str] = frozenset()) -> None:
        self.cid: str = conv["conversation_id"]
        self.mine, self.region, self.agent_names, self.log = subject_values, region, \
            agent_names, log
        self.keep = subject_values | linked  # never redacted: the subject's own
        self.ids: dict[str, str] = {}  # participant id -> the id the package shows
        self._words: dict[str, tuple[str, str]] = {}  # casefolded -> (kind, replacement)
        self._contacts: dict[str, tuple[str, str]] = {}  # others' e-mails, phones: for ids
        self._counts = {"customer": 0, "agent": 0}
        self._early: list[dict[str, Any]] | None = []  # notes made before the id pattern
        self.people, self.subject_ids = self._participants(conv)
        self._pattern = _words_pattern(self._words)
        self._id_words = {**self._contacts, **self._words}
        self._id_pattern = _words_pattern(self._id_words)
        early, self._early = self._early, None
        for entry in early:
            self._note(**entry)

    def _note(self, **entry: Any) -> None:
        """One line of the manifest's redaction log, its ids as the package shows them.

        The log names where a replacement was made; written with the original
        ids it would give back what was replaced (an id holding an address).
        """
        if self._early is not None:
            self._early.append(entry)
            return
        if entry.get("message_id") is not None:
            entry["message_id"] = self._shown_id(entry["message_id"])
        self.log.append({"conversation_id": self._shown_id(self.cid), **entry})

    def _shown_id(self, text: str) -> str:
        """An id as the package shows it (others' identifiers replaced), not logged."""
        if self._id_pattern is None:
            return text
        return self._id_pattern.sub(lambda m: self._id_words[m.group(0).casefold()][1], text)

    def _hide(self, p: dict[str, Any], alias: str, shown_id: str) -> None:
        """Whatever names participant ``p`` is replaced by ``alias`` where written."""
        self.ids[p["id"]] = shown_id
        if isinstance(p.get("name"), str) and len(p["name"].strip()) >= 2:
            self._words[p["name"].strip().casefold()] = ("name", alias)
        ids = [p["id"], p.get("customer_id")]
        if isinstance(p.get("platform_ids"), dict):
            ids += [str(x) for x in p["platform_ids"].values() if isinstance(x, (str, int))]
        for value in ids:
            if (isinstance(value, str) and len(value.strip()) >= 4
                    and value.strip().casefold() not in _GENERIC_IDS):
                self._words.setdefault(value.strip().casefold(), ("identifier", alias))

    def _participants(self, conv: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
        from vault.recordidentifiers import participant_identifiers

        people, subject_ids = [], set()
        for p in conv["participants"]:
            found = participant_identifiers(p, self.region)
            q = {k: p[k] for k in ("id", "role", "name", "email", "phone", "customer_id")
                 if k in p}
            if {v for _, v in found} & self.mine:
                subject_ids.add(p["id"])
            else:
                self._contact(p, found)
                q = self._other(p, q)
            people.append(q)
        return people, subject_ids

    def _other(self, p: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
        """How the package shows someone who is not the subject."""
        if p["role"] == "customer":
            self._counts["customer"] += 1
            q = {"id": f"other-customer-{self._counts['customer']}", "role": "customer",
                 "name": "[other customer]"}
            self._hide(p, "[other customer]", q["id"])
            self._note(participant_id=q["id"], kind="other_customer",
                       replacement="[other customer]")
            return q
        if p["role"] == "agent" and self.agent_names:
            self._counts["agent"] += 1
            n = self._counts["agent"]
            q["name"], q["id"] = f"Agent {n}", f"agent-{n}"
            self._hide(p, q["name"], q["id"])
            self._note(participant_id=q["id"], kind="agent_name", replacement=q["name"])
        for key in _CONTACT:
            if q.pop(key, None) is not None:
                self._note(participant_id=q["id"], kind=key, replacement=None)
        return q

    def _contact(self, p: dict[str, Any], found: list[tuple[str, str]]) -> None:
        """Another person's e-mail and phone (as written, normalised, its digits): for ids."""
        values = [(k, v) for k, v in found if k in _MARK]
        values += [(k, p[k]) for k in ("email", "phone") if isinstance(p.get(k), str)]
        values += [("phone", d) for k, v in found if k == "phone"
                   for d in tombstones.phone_digit_forms(v)]
        for kind, value in values:
            value = value.strip()
            if len(value) >= 4 and value not in self.keep:
                self._contacts.setdefault(value.casefold(), (kind, _MARK[kind]))

    def field(self, text: str, where: str, mid: str | None = None) -> str:
        """A shown string with others' identifiers and names replaced; each one logged.

        An id (conversation, message) is never searched for what looks like
        a phone number or an address: only another person's identifiers
        known from the participants, written whole, are replaced there.
        """
        at = {"message_id": mid} if mid is not None else {}
        if where in _ID_FIELDS:
            return self._swap(text, self._id_pattern, self._id_words, where, at)
        spans = [s for s in redaction.find(text, self.region) if s.value not in self.keep]
        out = redaction.replace(text, spans, lambda s: _MARK[s.kind])
        for s in spans:
            self._note(**at, field=where, kind=s.kind, replacement=_MARK[s.kind])
        return self._swap(out, self._pattern, self._words, where, at)

    def _swap(self, text: str, pattern: re.Pattern[str] | None,
              words: dict[str, tuple[str, str]], where: str, at: dict[str, str]) -> str:
        """``text`` with each whole word of ``words`` replaced; the counts logged."""
        if pattern is None:
            return text
        counts: dict[tuple[str, str], int] = {}

        def swap(m: re.Match[str]) -> str:
            kind, alias = words[m.group(0).casefold()]
            counts[(kind, alias)] = counts.get((kind, alias), 0) + 1
            return alias

        out = pattern.sub(swap, text)
        for (kind, alias), n in counts.items():
            self._note(**at, field=where, kind=kind, replacement=alias, count=n)
        return out

    def sender(self, pid: str | None) -> str | None:
        return None if pid is None else self.ids.get(pid, pid)

    def mentions_subject(self, text: str) -> bool:
        return any(s.value in self.mine for s in redaction.find(text, self.region))


def _words_pattern(words: dict[str, tuple[str, str]]) -> re.Pattern[str] | None:
    """Any of ``words`` (casefolded) written whole, any case; longest first."""
    if not words:
        return None
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(r"(?<!\w)(?:" + alts + r")(?!\w)", re.IGNORECASE)
