"""Identifiers: how e-mail addresses, phone numbers and names are normalised and found.

The same functions run at ingest (participants, and mentions inside message
text) and at query time (what a DPO types), so a match never depends on how
either side happened to write the identifier:

* e-mail: trimmed, ``mailto:`` and angle brackets removed, NFC, case-folded,
  and checked for a plausible shape (``local@domain.tld``).
* phone: E.164 (``+447700900123``) through ``phonenumbers``. Any written form
  is accepted (spaces, dashes, dots, parentheses, ``00`` international
  prefix, national numbers with a trunk ``0`` when a region is configured).
  *Possible* numbers are kept, not only *valid* ones: fictional ranges such
  as 07700 900xxx are possible but not valid, and people do give them.
  A number written without ``+``/``00`` needs a region; without one it is
  never guessed, only reported (:func:`find_phones`).
* names: :func:`name_key`, a loose key for name-only matching.
* free text: :func:`fold_text`, the one folding the full-text index and its
  queries both use.

Folding (``fold_text``): NFKC (compatibility forms such as full-width letters
and ligatures become plain letters), case-fold, then combining marks are
removed from Latin, Greek and Cyrillic letters so that "Zoë", "Zoë" (NFD)
and "Zoe" fold alike; marks on other scripts (kana voicing marks, Indic
vowel signs, Hebrew points) carry meaning and are kept. The result is NFC.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:
    import phonenumbers

#: regions people write that are not ISO 3166 codes
_REGION_ALIASES = {"UK": "GB", "EL": "GR"}
#: phonenumbers.SUPPORTED_REGIONS (9.0.43): checking the configured region, which every
#: vault command does, need not import phonenumbers (slow to import; an e-mail lookup never
#: uses it). A code not here is still looked up in phonenumbers; tests/test_identifiers.py
#: holds this set equal to the installed library's.
_KNOWN_REGIONS = frozenset("""
    AC AD AE AF AG AI AL AM AO AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK
    DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ
    GR GT GU GW GY HK HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM
    KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO
    MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH
    PK PL PM PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR
    SS ST SV SX SY SZ TA TC TD TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG US UY UZ VA VC
    VE VG VI VN VU WF WS XK YE YT ZA ZM ZW
""".split())

_EMAIL_IN_TEXT = re.compile(
    r"(?<![\w.+-])[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])"
)
_EMAIL_SHAPE = re.compile(
    r"^[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}$"
)
#: a run of digits and separators that people use to write phone numbers
_PHONE_LIKE = re.compile(r"(?<![\w+])\(?\d[\d\s().-]{5,22}\d(?!\w)")
_DATE_LIKE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$|^\d{1,2}[.-]\d{1,2}[.-]\d{2,4}$")
_MIN_DIGITS, _MAX_DIGITS = 8, 15
MAX_TEXT_CHARS = 1_000_000

# Latin, Greek, Cyrillic (and their extensions): marks on these are accents
_ACCENTED_BLOCKS = ((0x0000, 0x052F), (0x1D00, 0x1FFF), (0x2C60, 0x2C7F), (0xA640, 0xA7FF))


def _is_accentable(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _ACCENTED_BLOCKS)


def fold_text(text: str) -> str:
    """The search form of ``text``: NFKC, case-folded, accents off Latin/Greek/Cyrillic.

    Used for the full-text index and for queries alike. Length may change
    (``ß`` folds to ``ss``), so offsets into the original are not kept.
    """
    if text.isascii():
        return text.lower()  # what every step below comes to on ASCII, 30 times faster
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    out: list[str] = []
    # A mark with no base at the start goes as it would after a space: a query
    # word starts where the text it was found in had a space before it.
    base_accentable = True
    for char in decomposed:
        if unicodedata.combining(char):
            if base_accentable:
                continue
        else:
            base_accentable = _is_accentable(char)
        out.append(char)
    return unicodedata.normalize("NFC", "".join(out))


def name_key(text: str) -> str:
    """A person's name for name-only matching: folded, whitespace collapsed.

    "  ZOË   Müller " and "zoe muller" give the same key ("zoe muller").
    Accents are removed (see :func:`fold_text`): names are written both
    ways, and a name match is only ever a hint, shown with its reason.
    """
    return " ".join(fold_text(text).split())


# -- e-mail -------------------------------------------------------------------------

def normalise_email(text: str | None) -> str | None:
    """The normal form of an e-mail address, or None when it does not look like one."""
    if not text:
        return None
    value = unicodedata.normalize("NFC", text.strip())
    if value.lower().startswith("mailto:"):
        value = value[7:]
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    value = value.strip().casefold()
    if len(value) > 254 or not _EMAIL_SHAPE.match(value):
        return None
    local = value.split("@", 1)[0]
    if len(local) > 64:
        return None
    return value


def find_emails(text: str) -> list[str]:
    """The e-mail addresses written in ``text``, normalised, in order, each once."""
    found: list[str] = []
    for match in _EMAIL_IN_TEXT.finditer(text[:MAX_TEXT_CHARS]):
        email = normalise_email(match.group(0))
        if email and email not in found:
            found.append(email)
    return found


# -- phone ----------------------------------------------------------------------------

def region(name: str | None) -> str | None:
    """The ISO 3166 region code for ``name`` ("gb", "UK" -> "GB"), or None for none.

    Raises ValueError for a region phonenumbers does not know: a typo in the
    configuration must never silently turn phone matching off.
    """
    if name is None or not name.strip():
        return None
    code = name.strip().upper()
    code = _REGION_ALIASES.get(code, code)
    if code in _KNOWN_REGIONS:
        return code
    import phonenumbers

    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {name!r}: expected a two-letter ISO 3166 "
                         "code such as GB, US or DE")
    return code


def _e164(number: phonenumbers.PhoneNumber) -> str:
    import phonenumbers

    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _possible(number: phonenumbers.PhoneNumber) -> bool:
    """A complete dialable number (possible, not necessarily valid).

    ``is_possible_number`` also says yes to lengths that are never a whole
    number (``4471`` in GB), so the reason is checked: only ``IS_POSSIBLE``.
    """
    import phonenumbers

    reason = phonenumbers.is_possible_number_with_reason(number)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE)


def normalise_phone(text: str | None, region_name: str | None = None) -> str | None:
    """E.164 form of a phone number as written, or None when it is not a possible number.

    Without a region only international forms (``+44 ...``, ``0044 ...``) parse.
    """
    if not text:
        return None
    code = region(region_name)
    value = unicodedata.normalize("NFKC", text).strip()
    if len(value) > 64:
        return None
    if value.startswith("00"):
        value = "+" + value[2:]
    import phonenumbers

    try:
        number = phonenumbers.parse(value, code)
    except phonenumbers.NumberParseException:
        return None
    if not _possible(number):
        return None
    return _e164(number)


def is_valid_phone(e164: str) -> bool:
    """Whether an E.164 number is one some country actually assigns (not only possible)."""
    import phonenumbers

    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(e164, None)))
    except phonenumbers.NumberParseException:
        return False


def _glued(text: str, start: int, end: int) -> bool:
    """Digits stuck to letters ("AB123456789GB") are a code, not a phone number."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before.isalpha() or after.isalpha()


def _phone_matches(text: str, code: str | None) -> Iterator[tuple[int, int, str]]:
    """(start, end, E.164) of each phone number written in ``text``.

    The matcher costs about 50 µs per candidate number: text made of long
    digit runs ingests at a fraction of the usual speed (README, Known
    limitations). Callers give it only text with six digits in a run.
    """
    import phonenumbers

    matcher = phonenumbers.PhoneNumberMatcher(text, code or "ZZ",
                                              leniency=phonenumbers.Leniency.POSSIBLE)
    for m in matcher:
        if not _possible(m.number) or _DATE_LIKE.match(m.raw_string):
            continue
        if _glued(text, m.start, m.end):
            continue
        yield m.start, m.end, _e164(m.number)


def find_phones(text: str, region_name: str | None = None) -> tuple[list[str], list[str]]:
    """(E.164 numbers found in ``text``, digit strings that need a region to parse).

    The second list is only filled when no region is configured: numbers
    written without an international prefix are reported there (digits only)
    so that the operator can set ``phone_region``; they are never guessed.
    """
    code = region(region_name)
    text = text[:MAX_TEXT_CHARS]
    found: list[str] = []
    spans: list[tuple[int, int]] = []
    for start, end, number in _phone_matches(text, code):
        spans.append((start, end))
        if number not in found:
            found.append(number)

    unparsed: list[str] = []
    if code is None:
        for cand in _PHONE_LIKE.finditer(text):
            if any(s < cand.end() and cand.start() < e for s, e in spans):
                continue
            written = cand.group(0).strip()
            digits = re.sub(r"\D", "", written)
            if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS or _DATE_LIKE.match(written):
                continue
            if digits not in unparsed:
                unparsed.append(digits)
    return found, unparsed


@dataclass(frozen=True)
class Span:
    """Where an identifier is written in a text: ``text[start:end]``, its kind and value."""

    start: int
    end: int
    kind: str  # email | phone | phone_unparsed
    value: str


def spans(text: str, region_name: str | None = None) -> list[Span]:
    """Every e-mail address and phone number written in ``text``, with its place.

    The same matching as :func:`find_emails` and :func:`find_phones` (so a
    value found there is found here), for code that must rewrite the text:
    erasure and DSAR redaction. Sorted by position; spans never overlap.
    """
    code = region(region_name)
    text = text[:MAX_TEXT_CHARS]
    out: list[Span] = []
    for match in _EMAIL_IN_TEXT.finditer(text):
        email = normalise_email(match.group(0))
        if email:
            out.append(Span(match.start(), match.end(), "email", email))
    taken = [(s.start, s.end) for s in out]
    for start, end, number in _phone_matches(text, code):
        if any(s < end and start < e for s, e in taken):
            continue
        out.append(Span(start, end, "phone", number))
        taken.append((start, end))
    if code is None:
        for cand in _PHONE_LIKE.finditer(text):
            if any(s < cand.end() and cand.start() < e for s, e in taken):
                continue
            written = cand.group(0).strip()
            digits = re.sub(r"\D", "", written)
            if _MIN_DIGITS <= len(digits) <= _MAX_DIGITS and not _DATE_LIKE.match(written):
                out.append(Span(cand.start(), cand.end(), "phone_unparsed", digits))
    return sorted(out, key=lambda s: s.start)


# -- everything in a conversation -----------------------------------------------------

@dataclass
class Found:
    """Identifiers of one conversation: from participants and from message text."""

    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    unparsed_phones: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def _add(self, bucket: list[str], values: Iterable[str | None]) -> None:
        for value in values:
            if value and value not in bucket:
                bucket.append(value)


def collect(conv: dict[str, Any], region_name: str | None = None) -> Found:
    """Every identifier a conversation carries, normalised as the vault stores them."""
    out = Found()
    code = region(region_name)
    for person in conv.get("participants") or []:
        out._add(out.emails, [normalise_email(person.get("email"))])
        phone = person.get("phone")
        parsed = normalise_phone(phone, code)
        out._add(out.phones, [parsed])
        if phone and not parsed:  # stored as its digits (national without a region, or
            out._add(out.unparsed_phones, [re.sub(r"\D", "", phone)])  # no country's)
        if person.get("name"):
            out._add(out.names, [person["name"]])
    for msg in conv.get("messages") or []:
        texts = [msg.get("text") or ""]
        texts += [a.get("text") or "" for a in msg.get("attachments") or []]
        for text in texts:
            if not text:
                continue
            out._add(out.emails, find_emails(text))
            phones, unparsed = find_phones(text, code)
            out._add(out.phones, phones)
            out._add(out.unparsed_phones, unparsed)
    return out
