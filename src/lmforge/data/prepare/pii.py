"""Personal-data and secret detection with checksums, and redaction.

:func:`detect` returns non-overlapping :class:`Span` s (type, start, end, value) for the types in
``config.prepare.PII_TYPES``. Patterns are validated where a checksum or a grammar exists (Luhn
for cards, ISO 13616 mod-97 for IBANs, ``ipaddress`` for IPs, SSN area/group/serial rules,
phone shapes of E.164 and the national formats of the US/Canada, UK, Ireland, Australia, New Zealand,
India and South Africa (a + or trunk 0, a North American 3-3-4 shape, or a phone word before ten bare
digits), an entropy and character-class check for secrets), so
dates, version strings, order numbers and placeholders are not flagged. Where two spans overlap,
the one found by the earlier, more specific detector wins.
"""

from __future__ import annotations

import hashlib
import itertools
import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

_URL_CRED = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://([^\s:/@]+:[^\s@/]+)@[^\s/]+")
_PREFIX_SECRET = re.compile(
    r"(?<![\w-])(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|sk_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|rk_live_[A-Za-z0-9]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,})(?![\w-])"
)
_KEY_VALUE_SECRET = re.compile(
    r"(?i)(?:\b|(?<=_))(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?key(?:[_-]?id)?|auth[_-]?token"
    r"|token|password|passwd|pwd|client[_-]?secret)\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"
)
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d-])")  # after a "+" it is a phone number
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_UK_NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\w)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+\d{8,15}(?!\d)|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]\d{2,4}){0,4}[ .-]\d{2,8})(?![\w])(?![ .-]\d)"
)
# Bare digit runs (SMS style: "Statement for 07815296484"). A national number with its trunk 0 and
# 10-11 digits (UK 11; IE, AU, NZ, ZA 10; India 0 + 10) is a phone on its own; a 10-digit number
# without the 0 (North American NANP, Indian mobiles) only after a phone word, since ten bare digits
# are as often an order or account number.
_NOT_ISBN = r"(?<!ISBN )(?<!ISBN: )(?<!ISBN-10 )(?<!ISBN-10: )(?<!ISBN10: )"  # ISBN-10s also start with 0
_PHONE_TRUNK = re.compile(_NOT_ISBN + r"(?<![\w+.,/=&-])0[1-9]\d{8,9}(?![\w,.-]\d|\w)")
_PHONE_WORDED = re.compile(
    r"(?i)\b(?:call|calls|text|txt|sms|phone|ph|tel|telephone|mobile|mob|cell|whatsapp|ring|dial|fax|number|contact"
    r"|reach)\b[^\d\n]{0,20}?(?<![\w+])((?:[2-9]\d{2}[2-9]\d{6})|(?:[6-9]\d{9}))(?![\w,.-]\d|\w)")
# Written with separators but no + or trunk 0: North American 1-800-555-0199 / 1 (888) 555-0123, and
# Indian mobiles 098765 43210 / 98765 43210 (5 + 5 digits).
_PHONE_NANP = re.compile(r"(?<![\w+.-])1[ .-]?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?![\w]|[ .-]\d)")
_PHONE_IN = re.compile(r"(?<![\w+.-])0?[6-9]\d{4}[ -]\d{5}(?![\w]|[ .-]\d)")
_PHONE_AU_BUSINESS = re.compile(r"(?<![\w+.=&/-])1[38]00[ -]?\d{3}[ -]?\d{3}(?![\w]|[ .-]\d)")  # 1300 / 1800 numbers
_NANP_SHAPE = re.compile(r"^(?:1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}$")
_DATE_LIKE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_THOUSANDS = re.compile(r"^\d{1,3}(?:[ .,]\d{3})+$")
_PLACEHOLDER_WORDS = ("your", "xxx", "example", "changeme", "placeholder", "redacted", "dummy", "<", "***")


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int
    value: str


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 check: move the first 4 characters to the end, letters -> 10..35, mod 97 == 1."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = {c: text.count(c) for c in set(text)}
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _secret_value_ok(value: str) -> bool:
    low = value.lower()
    if any(word in low for word in _PLACEHOLDER_WORDS) or low in ("none", "null", "true", "false"):
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d", r"[^A-Za-z0-9]"))
    return classes >= 2 and re.search(r"\d", value) is not None and entropy(value) >= 2.5


def _phone_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if not 9 <= len(digits) <= 15 or _DATE_LIKE.match(value) or _THOUSANDS.match(value):
        return False
    groups = re.split(r"[ .-]+", value.replace("(", "").replace(")", ""))
    if len(groups[-1]) < 3 and len(groups) < 4:  # "2023-0415-77": lot numbers, not phones
        return False
    if _SSN_SHAPE.match(value):
        return False
    if not value.startswith(("+", "0", "(")) and not _NANP_SHAPE.match(value):
        # no country code and no trunk 0: only North American numbers are written this way; order
        # numbers (40512-7781), invoice ids (2023-004512) and catalogue refs (5555-4444-3333) are not
        return False
    if all(len(g) <= 2 for g in groups if g) and not value.startswith("+") and len(digits) != 10:
        return False  # 04 15 23 42 08 16: lottery numbers, not a 10-digit (French-style) phone
    if "." in value and not value.startswith("+"):
        parts = value.split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):  # an IPv4 address
            return False
    return True


def _ipv4_ok(value: str) -> bool:
    return all(int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in value.split("."))


def _ipv6_ok(value: str) -> bool:
    groups = [g for g in value.split("%")[0].split(":") if g]
    if len(groups) < 3 or not any(re.search(r"[a-fA-F]", g) or len(g) == 4 for g in groups):
        return False
    try:
        ipaddress.IPv6Address(value.split("%")[0])
    except ValueError:
        return False
    return True


def _card_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _ssn_ok(value: str) -> bool:
    return value not in ("123-45-6789", "078-05-1120")  # documented example numbers


# (type, pattern, capture group holding the value, validator); order = priority on overlap.
_DETECTORS: list[tuple[str, re.Pattern, int, Callable[[str], bool]]] = [
    ("URL_CREDENTIALS", _URL_CRED, 1, lambda v: True),
    ("SECRET", _PREFIX_SECRET, 0, lambda v: True),
    ("SECRET", _KEY_VALUE_SECRET, 1, _secret_value_ok),
    ("EMAIL", _EMAIL, 0, lambda v: True),
    ("IBAN", _IBAN, 0, iban_ok),
    ("CARD", _CARD, 0, _card_ok),
    ("NATIONAL_ID", _SSN, 0, _ssn_ok),
    ("NATIONAL_ID", _UK_NINO, 0, lambda v: True),
    ("IP_ADDRESS", _IPV4, 0, _ipv4_ok),
    ("IP_ADDRESS", _IPV6, 0, _ipv6_ok),
    ("PHONE", _PHONE, 0, _phone_ok),
    ("PHONE", _PHONE_NANP, 0, lambda v: True),
    ("PHONE", _PHONE_IN, 0, lambda v: True),
    ("PHONE", _PHONE_AU_BUSINESS, 0, lambda v: True),
    ("PHONE", _PHONE_TRUNK, 0, lambda v: True),
    ("PHONE", _PHONE_WORDED, 1, lambda v: True),
]


def _candidates(text: str, types: Iterable[str]) -> Iterator[Span]:
    wanted = set(types)
    for kind, pattern, group, valid in _DETECTORS:
        if kind not in wanted:
            continue
        for match in pattern.finditer(text):
            value = match.group(group)
            if value and valid(value):
                yield Span(kind, match.start(group), match.end(group), value)


_WORD = re.compile(r"\w+")
_GAP = re.compile(r"[^\w\n]{1,3}")


class TermList:
    """The user's own lists of terms to redact (patients' names, clients, code names), by type.

    A term is found as whole words: its words in a row in the text, each pair separated by 1-3 characters
    that are neither word characters nor a newline ("John Smith", "john  smith", "O'Brien" = "O Brien"), so
    "Ann" is not found in "Annual". Case-insensitive (``str.casefold``) unless ``match_case``. The longest
    term starting at a word wins. Cost: one dict lookup per word of the text, whatever the list's length.
    """

    def __init__(self, terms: dict[str, Iterable[str]], match_case: bool = False):
        self.match_case = match_case
        self._by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        self.size = 0
        for kind, values in terms.items():
            for value in values:
                words = tuple(self._key(w) for w in _WORD.findall(value))
                if words:
                    self._by_first.setdefault(words[0], []).append((words, kind))
                    self.size += 1
        for entries in self._by_first.values():
            entries.sort(key=lambda entry: -len(entry[0]))

    def _key(self, word: str) -> str:
        return word if self.match_case else word.casefold()

    def spans(self, text: str) -> Iterator[Span]:
        """The listed terms found in ``text``, left to right, not overlapping."""
        words = [(m.start(), m.end(), self._key(m.group())) for m in _WORD.finditer(text)]
        i = 0
        while i < len(words):
            length, kind = self._match(text, words, i)
            if not length:
                i += 1
                continue
            start, end = words[i][0], words[i + length - 1][1]
            yield Span(kind, start, end, text[start:end])
            i += length

    def _match(self, text: str, words: list[tuple[int, int, str]], i: int) -> tuple[int, str]:
        for term, kind in self._by_first.get(words[i][2], ()):
            n = len(term)
            if i + n <= len(words) and all(
                words[i + j][2] == term[j] and _GAP.fullmatch(text, words[i + j - 1][1], words[i + j][0])
                for j in range(1, n)
            ):
                return n, kind
        return 0, ""


def read_terms(kind: str, value: str | list[str], setting: str = "data.prepare.pii.terms") -> list[str]:
    """The terms of one ``pii.terms`` entry: the list itself, or the lines of the file it names (blank lines and
    ``#`` comments skipped). UserError naming the setting (and the file and line) when it cannot be used."""
    from lmforge.errors import UserError

    where = f"{setting}.{kind}"
    if isinstance(value, list):
        return [t for t in value if t.strip()]
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"no file {value!r}" + (" (a folder)" if path.is_dir() else ""), where=where,
                        hint=f"give a UTF-8 file with one term per line, or a list: {kind}: [{value}]")
    terms = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UserError(f"{path}:{number}: not UTF-8 text", where=where,
                                hint="save the list as UTF-8 (one term per line)") from None
            if line and not line.startswith("#"):
                terms.append(line)
    if not terms:
        raise UserError(f"{path}: no terms in the file", where=where, hint="one term per line; # starts a comment")
    return terms


def load_terms(terms: dict[str, str | list[str]], match_case: bool = False,
               setting: str = "data.prepare.pii.terms") -> TermList | None:
    """The :class:`TermList` of a ``pii.terms`` setting (None when empty); files are read here."""
    if not terms:
        return None
    return TermList({kind: read_terms(kind, value, setting) for kind, value in terms.items()}, match_case)


def detect(text: str, types: Iterable[str], terms: TermList | None = None) -> list[Span]:
    """Non-overlapping spans of personal data / secrets in ``text``, sorted by start: the built-in ``types``,
    then the user's ``terms`` (a term inside an e-mail address is covered by the address)."""
    taken: list[Span] = []
    candidates = _candidates(text, types)
    if terms is not None:
        candidates = itertools.chain(candidates, terms.spans(text))
    for span in candidates:
        if all(span.end <= t.start or span.start >= t.end for t in taken):
            taken.append(span)
    return sorted(taken, key=lambda s: s.start)


def pseudonym(span: Span, salt: str) -> str:
    """A consistent replacement: the same value and salt always give the same pseudonym."""
    tag = hashlib.sha256(f"{salt}:{span.type}:{span.value}".encode()).hexdigest()[:8]
    if span.type == "EMAIL":
        return f"person-{tag}@example.invalid"
    return f"<{span.type}_{tag}>"


def redact(text: str, spans: list[Span], mode: str = "placeholder", salt: str = "") -> str:
    """Replace each span with ``<TYPE>`` (mode "placeholder") or :func:`pseudonym` ("pseudonym")."""
    out, last = [], 0
    for span in spans:
        out.append(text[last : span.start])
        out.append(f"<{span.type}>" if mode == "placeholder" else pseudonym(span, salt))
        last = span.end
    out.append(text[last:])
    return "".join(out)
