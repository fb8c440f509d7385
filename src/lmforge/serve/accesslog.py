"""Structured JSON request logs with optional personal-data redaction.

Redaction uses the data stage's detectors (``lmforge.data.prepare.pii``: placeholders such as
``<EMAIL>``) when importable, else the small regex redactor below (e-mail addresses and phones).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?<![\w])(?:\+?\d{1,3}[\s.\-]?)?(?:\(\d{2,4}\)[\s.\-]?)?\d{3,4}[\s.\-]?\d{3,4}(?:[\s.\-]?\d{2,4})?(?![\w])"
)


def regex_redact(text: str) -> str:
    """Replace e-mail addresses with [EMAIL] and phone-like digit runs with [PHONE]."""
    return PHONE.sub("[PHONE]", EMAIL.sub("[EMAIL]", text))


def _data_redactor(terms=None):
    """The data-preparation detectors (checksummed e-mails, phones, cards, IBANs, secrets...) and the user's listed
    ``terms`` (a :class:`~lmforge.data.prepare.pii.TermList`), if present."""
    try:
        from lmforge.data.prepare.clean import scrub
    except ImportError:
        return None
    return lambda text: scrub(text, terms)


def log_terms(log_cfg):
    """The listed terms masked in logged prompts (read now: a list that cannot be read stops the start, rather
    than the logs holding the names), or None when no text is logged or masked."""
    if not (log_cfg.enabled and log_cfg.log_prompts and log_cfg.redact and log_cfg.terms):
        return None
    from lmforge.data.prepare.pii import load_terms

    return load_terms(log_cfg.terms, log_cfg.terms_match_case, setting="serve.log.terms")


class AccessLog:
    """``write(**fields)`` logs one JSON line (logger ``lmforge.serve.access``)."""

    def __init__(self, enabled: bool = True, file: str | None = None, log_prompts: bool = False,
                 redact: bool = True, terms=None):
        self.enabled, self.log_prompts, self.redact_on = enabled, log_prompts, redact
        self.redactor = (_data_redactor(terms) or regex_redact) if redact else None
        self.logger = logging.getLogger("lmforge.serve.access")
        self.logger.propagate = False
        if enabled and not self.logger.handlers:
            handler = logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)

    def text(self, value: str) -> str | None:
        """Prompt/response text as it may be logged (None when prompts are not logged)."""
        if not self.log_prompts:
            return None
        return self.redactor(value) if self.redactor else value

    def write(self, **fields) -> None:
        if not self.enabled:
            return
        record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), **fields}
        self.logger.info(json.dumps({k: v for k, v in record.items() if v is not None}))
