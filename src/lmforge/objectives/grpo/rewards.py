"""Reward sources for GRPO: a user's Python function, a trained reward model, and simple built-ins.

A reward function is called as ``f(prompt: str, completion: str, reference: str) -> float``
(``reference`` is the dataset's answer, "" when none). Built-ins usable as
``reward: lmforge.objectives.grpo.rewards:exact_match`` and friends.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import string
from pathlib import Path
from typing import Any, Callable

from lmforge.errors import UserError

RewardFn = Callable[[str, str, str], float]


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prompt: str, completion: str, reference: str) -> float:
    """1.0 when the normalised completion equals the normalised reference, else 0.0."""
    return float(normalize(completion) == normalize(reference))


def contains_answer(prompt: str, completion: str, reference: str) -> float:
    """1.0 when the normalised reference occurs in the normalised completion, else 0.0."""
    ref = normalize(reference)
    return float(bool(ref) and ref in normalize(completion))


def brevity(prompt: str, completion: str, reference: str) -> float:
    """contains_answer minus 0.01 per word beyond 10 words (rewards short, correct answers)."""
    words = len(completion.split())
    return contains_answer(prompt, completion, reference) - 0.01 * max(0, words - 10)


def short_answer(prompt: str, completion: str, reference: str) -> float:
    """A format check plus correctness: 1.0 when the answer is 1-5 words, plus contains_answer (0..2).

    Dense enough for a small model: its sampled answers vary in length within a group, so the
    group-normalised advantages are non-zero even when no sample contains the reference yet.
    """
    words = len(completion.split())
    return float(1 <= words <= 5) + contains_answer(prompt, completion, reference)


def load_reward_function(ref: str) -> RewardFn:
    """``"module:function"`` or ``"path/to/file.py:function"`` -> the callable (UserError if missing)."""
    target, _, name = ref.rpartition(":")
    where = "objective.reward"
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UserError(f"reward file '{target}' not found", where=where, hint="paths are relative to where you run lmforge")
        spec = importlib.util.spec_from_file_location(f"lmforge_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UserError(f"cannot import reward module '{target}': {exc}", where=where,
                            hint="use 'package.module:function' on the Python path or 'file.py:function'") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"'{name}' is not a function in '{target}'", where=where)
    return fn


class RewardModelScorer:
    """Scores (prompt, completion) with a trained 1-output sequence-classification model."""

    def __init__(self, folder: str, system_prompt: str | None = None):
        from lmforge.config.schema import ModelConfig
        from lmforge.model import load_model, load_tokenizer
        from lmforge.model.task import TaskInfo

        cfg = ModelConfig(name=folder)
        self.tokenizer = load_tokenizer(cfg)
        self.model = load_model(cfg, TaskInfo("sequence_classification", 1, ("reward",))).eval().requires_grad_(False)
        self.system_prompt = system_prompt

    def __call__(self, prompts: list[str], completions: list[str], device: Any) -> list[float]:
        import torch

        from lmforge.data.chat import render_chat
        from lmforge.data.preference import conversation

        texts = []
        for prompt, completion in zip(prompts, completions):
            messages = conversation(prompt, completion, None)
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            texts.append(render_chat(self.tokenizer, messages))
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=1024, add_special_tokens=False,
                             return_tensors="pt")
        self.model.to(device)
        with torch.no_grad():
            logits = self.model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
        return logits[:, 0].float().tolist()
