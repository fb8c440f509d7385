"""Config of the data-prepare step (``data.prepare``): one strict, frozen section per rule.

Torch-free. Defaults are safe for most users: normalise, drop empty/junk examples, remove exact
and near duplicates (also across splits), redact personal data with typed placeholders, fix
obvious label typos, then split like every run (``data.split``). Augmentation is off unless asked for.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PII_TYPES: tuple[str, ...] = (
    "EMAIL",
    "PHONE",
    "CARD",
    "IBAN",
    "IP_ADDRESS",
    "NATIONAL_ID",
    "URL_CREDENTIALS",
    "SECRET",
)


class PrepareSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormaliseConfig(PrepareSection):
    enabled: bool = Field(default=True, description="Run the normalisation step.")
    unicode: Literal["NFC", "NFKC", "none"] = Field(
        default="NFC", description="Unicode normal form; NFKC also folds ligatures and full-width forms."
    )
    whitespace: bool = Field(default=True, description="Collapse runs of spaces/tabs; trim lines.")
    control_chars: bool = Field(default=True, description="Remove control and zero-width characters.")
    mojibake: bool = Field(default=True, description="Repair UTF-8 text decoded as latin-1/cp1252.")
    html: bool = Field(default=True, description="Unescape entities; <br>/<p> become newlines; drop tags.")
    fields: list[str] | None = Field(
        default=None, description="Canonical fields to normalise; default all text fields."
    )


class FilterConfig(PrepareSection):
    enabled: bool = Field(default=True, description="Run the quality filters.")
    min_length: int = Field(default=1, ge=0, description="Tokens (with a tokenizer) or words.")
    max_length: int | None = Field(default=None, ge=1, description="Tokens (with a tokenizer) or words.")
    max_repeated_lines: float = Field(
        default=0.3, gt=0, le=1, description="Max share of lines that repeat an earlier line."
    )
    max_repeated_ngrams: float = Field(
        default=0.3, gt=0, le=1, description="Max share of word n-grams that repeat an earlier one."
    )
    ngram: int = Field(default=3, ge=1, description="Word n-gram size of the repetition check.")
    min_words_for_repetition: int = Field(
        default=50, ge=1, description="Shorter texts skip the n-gram check (\"love love love\" is a real review)."
    )
    languages: list[str] | None = Field(
        default=None, description="Keep only these ISO 639-1 languages (e.g. [en]); identified by py3langid."
    )
    min_language_confidence: float = Field(
        default=0.5, ge=0, le=1, description="Drop texts whose language is identified with lower confidence."
    )
    language_min_chars: int = Field(
        default=20, ge=0, description="Shorter texts skip the language check (too short to identify reliably)."
    )


class DedupConfig(PrepareSection):
    exact: bool = Field(default=True, description="Drop exact duplicates (case and spacing ignored).")
    near: bool = Field(default=True, description="Drop near duplicates (MinHash + LSH).")
    threshold: float = Field(default=0.8, gt=0, lt=1, description="Estimated Jaccard similarity.")
    num_perm: int = Field(default=128, ge=16, le=1024, description="MinHash signature length.")
    shingle: int = Field(default=5, ge=1, description="Character n-gram size.")
    across_splits: bool = Field(
        default=True, description="A validation/test example found in train is a leak: drop the train copy."
    )


class PiiConfig(PrepareSection):
    enabled: bool = Field(default=True, description="Detect personal data and secrets.")
    action: Literal["placeholder", "pseudonym", "drop", "report"] = Field(
        default="placeholder",
        description="<EMAIL>-style placeholder, consistent pseudonym, drop the example, or only report.",
    )
    types: list[Literal[PII_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(PII_TYPES), description="Types to detect; default all."
    )
    terms: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Your own lists to redact, by type (names are not detected otherwise): `NAME: patients.txt` "
        "(a UTF-8 file, one term per line, `#` comments) or `CLIENT: [Acme Corp, Globex]`. Each term is found "
        "as whole words (its words in a row, at most 3 spaces or punctuation between them on one line) and "
        "handled like a detected type: `<NAME>`, a pseudonym, drop or report.",
    )
    terms_match_case: bool = Field(
        default=False, description="Match `terms` case-sensitively (for lists holding common words: May, Bill)."
    )

    @field_validator("terms")
    @classmethod
    def _type_names(cls, terms: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for kind, value in terms.items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", kind):
                raise ValueError(f"type name {kind!r}: use capitals, digits and _ (it becomes the <{kind.upper()}> "
                                 "placeholder), e.g. NAME")
            if isinstance(value, str) and not value.strip():
                raise ValueError(f"{kind}: give a file of terms or a list of terms")
            if isinstance(value, list) and not any(t.strip() for t in value):
                raise ValueError(f"{kind}: the list is empty")
        return terms


class LabelConfig(PrepareSection):
    policy: Literal["fix", "drop", "fail"] = Field(
        default="fix", description="Label problems: fix what is certain (drop the rest), drop, or fail."
    )
    known: list[str] | None = Field(default=None, description="Allowed labels; default: data.labels or inferred.")
    typo_cutoff: float = Field(default=0.8, gt=0, le=1, description="difflib ratio to call a label a typo.")
    rare_share: float = Field(
        default=0.02, ge=0, lt=1, description="Inferred labels rarer than this share may be typos."
    )


class ParaphraseConfig(PrepareSection):
    model: str = Field(description="Causal LM that writes the paraphrases (built-in name, folder or hub id).")
    per_example: int = Field(default=1, ge=1, le=8, description="Paraphrases asked for per train example.")
    max_new_tokens: int = Field(default=64, ge=1, le=1024, description="Generation budget per paraphrase.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="0 = greedy; above 0 = seeded sampling.")
    max_length_ratio: float = Field(
        default=2.0, gt=1, description="Drop a paraphrase longer than ratio x or shorter than 1/ratio x the original."
    )
    min_words: int = Field(default=3, ge=1, description="Shorter texts are not paraphrased.")
    batch_size: int = Field(default=8, ge=1, description="Texts generated together.")


class AugmentConfig(PrepareSection):
    oversample: bool = Field(default=False, description="Repeat minority-class train examples to balance.")
    eda: bool = Field(default=False, description="Synonym replacement, random swap and deletion.")
    copies: int = Field(default=1, ge=1, le=16, description="EDA copies per train example.")
    rate: float = Field(default=0.1, gt=0, le=0.5, description="Share of words each operation touches.")
    min_words: int = Field(default=6, ge=1, description="Shorter texts are left unchanged.")
    paraphrase: ParaphraseConfig | None = Field(
        default=None, description="Paraphrases of train examples written by a model you name (off)."
    )


class PrepareConfig(PrepareSection):
    normalise: NormaliseConfig = Field(default_factory=NormaliseConfig, description="Text normalisation.")
    filter: FilterConfig = Field(default_factory=FilterConfig, description="Quality filters.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Duplicate and leak removal.")
    pii: PiiConfig = Field(default_factory=PiiConfig, description="Personal data and secrets.")
    labels: LabelConfig = Field(default_factory=LabelConfig, description="Label checks (classification).")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Train-set augmentation (off).")
    examples_per_rule: int = Field(default=3, ge=0, le=20, description="Examples kept in the manifest.")


def hidden_terms(terms: dict[str, str | list[str]]) -> dict[str, str]:
    """``pii.terms`` as it may be written where others read it (model cards, the prepare manifest): a list file
    by its path, an inline list by its size only. The terms are the personal data the redaction removes."""
    return {kind: value if isinstance(value, str) else f"<{len(value)} terms, not written here>"
            for kind, value in terms.items()}


def shareable_config(dumped: dict) -> dict:
    """A dumped run config (``RunConfig.model_dump(mode="json")``) with inline ``data.prepare.pii.terms`` lists
    replaced by their size (:func:`hidden_terms`); the input is not changed."""
    import copy

    pii = ((dumped.get("data") or {}).get("prepare") or {}).get("pii") or {}
    if not pii.get("terms"):
        return dumped
    out = copy.deepcopy(dumped)
    out["data"]["prepare"]["pii"]["terms"] = hidden_terms(pii["terms"])
    return out
