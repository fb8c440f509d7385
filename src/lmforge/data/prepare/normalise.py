"""Text normalisation: Unicode form, mojibake repair, HTML, control characters, whitespace.

Each step is a pure ``str -> str`` function; :func:`normalise_text` chains the enabled ones in
a fixed order (mojibake before Unicode form, HTML before whitespace, so ``<br />`` becomes a
newline that the whitespace step keeps). Markdown code fences are left alone by the HTML and
whitespace steps, and line indentation is kept, so code in answers survives.
"""

from __future__ import annotations

import html
import re
import unicodedata

from lmforge.config.prepare import NormaliseConfig

try:  # ftfy is the well-kept mojibake fixer; without it a small round-trip repair is used.
    import ftfy
except ImportError:  # pragma: no cover - depends on the environment
    ftfy = None

_BREAK_TAG = re.compile(r"[^\S\n]*<\s*(?:br|/p|p|/div|/li|li|/tr|hr)\b[^>]*>[^\S\n]*", re.IGNORECASE)
_HTML_NAMES = (
    "a|abbr|article|b|big|blockquote|body|br|button|center|cite|code|dd|del|div|dl|dt|em|font|footer|form|"
    "h[1-6]|head|header|hr|html|i|iframe|img|input|ins|label|li|link|mark|meta|nav|ol|p|pre|q|s|script|"
    "section|small|span|strike|strong|style|sub|sup|table|tbody|td|th|thead|title|tr|tt|u|ul"
)
# Only known HTML element names, so "x<y and y>z" or "List<String>" survive.
_TAG = re.compile(rf"</?(?:{_HTML_NAMES})(?:\s[^<>]*)?/?>|<!--.*?-->", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"(```.*?(?:```|$))", re.DOTALL)
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
_HSPACE = re.compile(r"(?<=\S)[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200d\u2060\ufeff\ud800-\udfff\ue000-\uf8ff"
    "\U000f0000-\U000ffffd\U00100000-\U0010fffd]"
)
# Sequences typical of UTF-8 read as cp1252/latin-1 (Ã©, â€™, Â ...).
_MOJIBAKE = re.compile("[\u00c2\u00c3\u00c5\u00e2][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]")


def fix_mojibake(text: str) -> str:
    """Repair UTF-8 text that was decoded as cp1252 or latin-1 ("cafÃ©" -> "café").

    Uses ``ftfy.fix_encoding`` when installed; otherwise re-encodes as cp1252 (then latin-1)
    and decodes as UTF-8, keeping the result only if it decodes cleanly and has fewer
    mojibake markers. Text without markers is returned unchanged.
    """
    if not _MOJIBAKE.search(text):
        return text
    if ftfy is not None:
        return ftfy.fix_encoding(text)
    return _round_trip(text)


def _round_trip(text: str) -> str:
    raw = bytearray()
    for ch in text:
        try:
            raw += ch.encode("cp1252")
        except UnicodeEncodeError:
            if ord(ch) > 255:  # not a byte misread as a character: not mojibake we can undo
                return text
            raw.append(ord(ch))  # cp1252 holes (0x81, 0x8d, 0x8f, 0x90, 0x9d) map to themselves
    try:
        candidate = raw.decode("utf-8")
    except UnicodeDecodeError:
        return text
    return candidate if len(_MOJIBAKE.findall(candidate)) < len(_MOJIBAKE.findall(text)) else text


def strip_html(text: str) -> str:
    """Line-break tags become newlines, other tags are removed, entities unescaped.

    Only text that looks like HTML (a tag or an entity) is touched, so "a < b > c" survives.
    """
    if "<" not in text and "&" not in text:
        return text
    text = _BREAK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    if _ENTITY.search(text):
        text = html.unescape(text)
    return text


def strip_control(text: str) -> str:
    """Drop control (Cc, except tab/newline), zero-width, soft-hyphen, surrogate and private-use characters; CRLF -> LF."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def collapse_whitespace(text: str, trim: bool = True) -> str:
    """Runs of spaces/tabs after a word -> one space; line indentation kept (code stays valid);
    trailing spaces dropped; at most one blank line; text ends trimmed when ``trim``."""
    text = "\n".join(_HSPACE.sub(" ", line).rstrip() for line in text.split("\n"))
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip() if trim else text


def _outside_fences(text: str, fn) -> str:
    """Apply ``fn`` to the parts of ``text`` outside Markdown code fences (```...```)."""
    parts = _FENCE.split(text)
    return "".join(part if i % 2 else fn(part) for i, part in enumerate(parts))


def normalise_text(text: str, cfg: NormaliseConfig) -> str:
    """Apply the enabled steps of ``cfg`` to one string."""
    if cfg.mojibake:
        text = fix_mojibake(text)
    if cfg.unicode != "none":
        text = unicodedata.normalize(cfg.unicode, text)
    if cfg.html:
        text = _outside_fences(text, strip_html)
    if cfg.control_chars:
        text = strip_control(text)
    if cfg.whitespace:
        text = _outside_fences(text, lambda part: collapse_whitespace(part, trim=False)).strip()
    return text
