"""Language identification for the optional ``filter.languages`` rule (py3langid, offline).

py3langid (a maintained fork of langid.py, Lui & Baldwin 2012) ships its 97-language naive-Bayes
model inside the wheel (~0.7 MB): nothing is downloaded. Confidence is the normalised
probability of the best language. Texts shorter than ``filter.language_min_chars`` are not
checked (too short to identify reliably) and are kept.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from lmforge.config.prepare import FilterConfig
from lmforge.errors import UserError


@lru_cache(maxsize=1)
def _identifier() -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise UserError(
            "filter.languages needs the py3langid package",
            where="data.prepare.filter.languages",
            hint="pip install py3langid==0.4.0, or remove filter.languages",
        ) from err
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, confidence in [0, 1]) of ``text``'s language."""
    lang, prob = _identifier().classify(text)
    return str(lang), float(prob)


def language_reason(text: str, cfg: FilterConfig) -> str | None:
    """None to keep ``text``; else a detail such as ``"de (0.97)"`` for the ``filter_language`` rule."""
    if not cfg.languages or len(text.strip()) < cfg.language_min_chars:
        return None
    lang, prob = identify(text)
    if lang in cfg.languages and prob >= cfg.min_language_confidence:
        return None
    return f"{lang} ({prob:.2f})"
