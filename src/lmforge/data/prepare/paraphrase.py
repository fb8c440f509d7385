"""Paraphrases written by a causal LM the user names (``augment.paraphrase``).

The model and tokenizer are loaded by the caller (the pipeline, through ``lmforge.model``:
``load_tokenizer`` / ``load_model`` with ``TaskInfo("causal_lm")``) because the data stage may
not import the model stage. Each text is wrapped in a paraphrase instruction, rendered with the
model's chat template (plain prompt when it has none), and generated greedily
(``temperature: 0``) or by seeded sampling. Outputs are cleaned (first line, "Paraphrase:" /
"Here is ..." prefixes and surrounding quotes stripped) and dropped when empty, identical to the
original (case and spacing ignored), repeated, or too different in length (``max_length_ratio``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from lmforge.config.prepare import ParaphraseConfig
from lmforge.data.prepare.dedup import dedup_key

INSTRUCTION = "Paraphrase the following text. Keep its meaning and language. Reply with the paraphrase only.\n\n"
_PREFIX = re.compile(
    r"^\s*(?:sure[,.!]?\s*)?(?:(?:here(?:'s| is)\s+(?:a|the|my|one)?\s*)?"
    r"(?:paraphrased?|rephrased|reworded|rewritten)(?:\s+(?:text|version|sentence))?\s*:\s*)?",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’«»`"


def paraphrase_messages(text: str) -> list[dict]:
    """The chat messages that ask for a paraphrase of ``text``."""
    return [{"role": "user", "content": INSTRUCTION + text}]


def clean_paraphrase(original: str, output: str, max_length_ratio: float) -> tuple[str | None, str]:
    """(cleaned paraphrase or None, outcome): outcome is "kept", "empty", "identical" or "length"."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    text = _PREFIX.sub("", lines[0]) if lines else ""
    text = text.strip().strip(_QUOTES).strip()
    if not text:
        return None, "empty"
    if dedup_key(text) == dedup_key(original):
        return None, "identical"
    ratio = len(text) / max(1, len(original))
    if ratio > max_length_ratio or ratio < 1 / max_length_ratio:
        return None, "length"
    return text, "kept"


class ModelParaphraser:
    """``paraphraser(texts) -> [[paraphrase, ...] per text]``, deterministic for a seed.

    ``model``: a transformers causal LM; ``tokenizer``: its tokenizer. ``counts`` tallies
    outcomes (``paraphrase_dropped_empty`` / ``_identical`` / ``_length`` / ``_repeat``).
    """

    def __init__(self, model: Any, tokenizer: Any, cfg: ParaphraseConfig, seed: int):
        self.model, self.tokenizer, self.cfg, self.seed = model, tokenizer, cfg, seed
        self.counts: Counter = Counter()
        self._calls = 0

    def _prompt(self, text: str) -> str:
        messages = paraphrase_messages(text)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return messages[0]["content"] + "\n\nParaphrase:"

    def generate(self, texts: list[str]) -> list[list[str]]:
        """Raw generated continuations, ``cfg.per_example`` per text."""
        import torch

        tok, cfg = self.tokenizer, self.cfg
        side, tok.padding_side = tok.padding_side, "left"
        try:
            batch = tok([self._prompt(t) for t in texts], return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        sample = cfg.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": sample, "max_new_tokens": cfg.max_new_tokens, "num_return_sequences": cfg.per_example}
        if sample:
            kwargs["temperature"] = cfg.temperature
            torch.manual_seed(self.seed + self._calls)  # seeded: same seed + same batches -> same text
        self._calls += 1
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**batch, pad_token_id=pad, **kwargs)
        new = out[:, batch["input_ids"].shape[1] :]
        decoded = tok.batch_decode(new, skip_special_tokens=True)
        n = cfg.per_example
        return [decoded[i * n : (i + 1) * n] for i in range(len(texts))]

    def __call__(self, texts: list[str]) -> list[list[str]]:
        """Cleaned, kept paraphrases for each text (possibly none)."""
        out = []
        for original, outputs in zip(texts, self.generate(texts)):
            kept: list[str] = []
            for output in outputs:
                text, outcome = clean_paraphrase(original, output, self.cfg.max_length_ratio)
                if text is not None and dedup_key(text) in {dedup_key(k) for k in kept}:
                    text, outcome = None, "repeat"
                if text is None:
                    self.counts[f"paraphrase_dropped_{outcome}"] += 1
                else:
                    kept.append(text)
            out.append(kept)
        return out
