"""A data subject as a DPO names them: e-mail addresses, phone numbers, names, ids.

:class:`Subject` normalises what a person typed exactly as ingest normalised
what it stored (:mod:`vault.identifiers`: e-mail case-folded, phone in E.164
from any written form with the vault's region, "UK" taken as "GB"; a
Telegram user number also as the ``user<id>`` its exports write), and says
how it read each value (``notes``) and what may explain finding nothing
(``doubts``), never repeating a value in an error. :mod:`vault.subjects`
looks the result up.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

from vault import identifiers
from vault.errors import UsageError

#: digits a number that does not parse must have to be looked up as such (E.164: 15)
MIN_DIGITS, MAX_DIGITS = 6, 17


#: said when a number that is no valid one finds nothing: message text indexes valid numbers
_TEXT_FORM = ("in message text only valid numbers are indexed: 'chatvault search' with the "
              "digits as written there finds other forms")


@dataclass
class Subject:
    """The normalised identifiers of one person (see :meth:`parse`)."""

    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    platform_ids: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)
    #: numbers given that are not possible phone numbers, as their digits: the
    #: store keeps such a number on a participant the same way (``phone_unparsed``)
    phone_digits: list[str] = field(default_factory=list)
    #: what the person should know about how their input was read
    notes: list[str] = field(default_factory=list, compare=False)
    #: said only when nothing exact is found (fictional 07700 900xxx are "not valid" too)
    doubts: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def parse(cls, *, emails: Iterable[str] = (), phones: Iterable[str] = (),
              names: Iterable[str] = (), ids: Iterable[str] = (),
              customer_ids: Iterable[str] = (), region: str | None = None) -> "Subject":
        """Normalise what a person typed; UsageError names what cannot be used.

        The message never repeats the value (it may be personal data that
        would end up in a shell log or a ticket); it says which option.
        """
        out = cls()
        emails, phones, names, ids = list(emails), list(phones), list(names), list(ids)
        for n, text in enumerate(emails, 1):
            email = identifiers.normalise_email(text)
            if email is None:
                raise UsageError(f"{_which('--email', n, emails)} is not an e-mail address")
            _add(out.emails, email)
        for n, text in enumerate(phones, 1):
            out._add_phone(text, region, _which("--phone", n, phones))
        for n, text in enumerate(names, 1):
            key = identifiers.name_key(text)
            if not key:
                raise UsageError(f"{_which('--name', n, names)} is empty")
            _add(out.names, key)
        for n, text in enumerate(ids, 1):
            platform, _, value = text.strip().partition(":")
            if not platform or not value:
                raise UsageError(f"{_which('--id', n, ids)}: expected PLATFORM:ID, "
                                 "e.g. slack:U024BE7LH")
            _add(out.platform_ids, f"{platform.lower()}:{value}")
            if platform.lower() == "telegram" and value.isdigit():
                # Telegram's exports write a user as from_id 'user<id>'; people know the number
                _add(out.platform_ids, f"telegram:user{value}")
        for text in customer_ids:
            if text.strip():
                _add(out.customer_ids, text.strip())
        if out.empty():
            raise UsageError("give at least one identifier: --email, --phone, --name, --id "
                             "or --customer-id")
        return out

    def _add_phone(self, text: str, region: str | None, which: str) -> None:
        """A number in E.164, else (a participant's number may be stored so) its digits."""
        phone = identifiers.normalise_phone(text, region)
        if phone is not None:
            _add(self.phones, phone)
            if not identifiers.is_valid_phone(phone):
                # possible but not valid: often a foreign number read with our region
                written_whole = text.strip().startswith(("+", "00"))
                how = "" if written_whole else f" with region {region}"
                advice = ("no country assigns it" if written_whole else "if it belongs to "
                          "another country, write it with + and its country code")
                self.doubts.append(f"{which} was read{how} as {phone}, which is not a valid "
                                   f"number ({advice}); {_TEXT_FORM}")
            return
        written = unicodedata.normalize("NFKC", text or "").strip()
        digits = re.sub(r"\D", "", written)
        international = written.startswith(("+", "00"))
        # Without a region a national number is not invalid but unknown: which
        # country? Looking its digits up could say "nothing held" falsely.
        if not (region or international) or not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
            hint = "" if region else " (no phone region is configured: write it with +)"
            raise UsageError(f"{which} is not a possible phone number{hint}")
        if written.startswith("00"):
            digits = digits[2:]
        _add(self.phone_digits, digits)
        self.notes.append(f"{which} is not a possible phone number: looked up as the digits "
                          "written, as a number that did not parse is stored (needs review)")
        self.doubts.append(_TEXT_FORM)

    def empty(self) -> bool:
        return not (self.emails or self.phones or self.names or self.platform_ids
                    or self.customer_ids or self.phone_digits)

    def exact(self) -> list[tuple[str, str]]:
        """(kind, value) of the identifiers that identify the person exactly."""
        return ([("email", e) for e in self.emails] + [("phone", p) for p in self.phones]
                + [("platform_id", i) for i in self.platform_ids]
                + [("customer_id", c) for c in self.customer_ids])

    def unparsed_forms(self) -> list[str]:
        """Digit strings this person's numbers would be stored as, without a region."""
        out: list[str] = list(self.phone_digits)
        if not self.phones:
            return out  # no tombstones nor phonenumbers imported for an e-mail lookup
        from vault.tombstones import phone_digit_forms

        for phone in self.phones:
            for digits in phone_digit_forms(phone):
                _add(out, digits)
        return out

    def pairs(self) -> list[tuple[str, str]]:
        return self.exact() + self.digit_pairs() + [("name", n) for n in self.names]

    def digit_pairs(self) -> list[tuple[str, str]]:
        """The numbers given that did not parse, as a case or erasure stores them."""
        return [("phone_unparsed", d) for d in self.phone_digits]

    def bucket(self, kind: str) -> list[str]:
        """Where a stored (kind, value) of a case or an erasure goes back to."""
        return {"email": self.emails, "phone": self.phones, "name": self.names,
                "platform_id": self.platform_ids, "customer_id": self.customer_ids,
                "phone_unparsed": self.phone_digits}[kind]


def _which(option: str, n: int, given: list[str]) -> str:
    """Names one value of an option without repeating it (it is personal data)."""
    return f"the {option} value" if len(given) == 1 else f"{option} value {n} of {len(given)}"


def _add(bucket: list[str], value: str) -> None:
    if value not in bucket:
        bucket.append(value)
