"""Parity checks: an exported model, reloaded through its own loader, must behave like the run's model.

Every export format (GGUF, ONNX, ...) reloads what it wrote and calls :func:`check_parity`:

- logits: the exported model's logits on a few held-out prompts (the same token ids) are within
  ``atol + rtol * max|reference logits|`` of the reference model's (the model as evaluated);
- greedy generations (causal LMs): the same tokens for ``max_new_tokens`` steps, stopping on eos
  and the chat template's end-of-turn token; both models decode through lmforge's generation
  engine (KV cache, prompts batched alike, each in its own dtype). A divergence counts as a failure unless it happens
  at a step where both models' logits are within the bound and the reference's own top choice
  beats the exported one by less than the bound (a near tie that the format's rounding may
  legitimately flip); those are reported as "tie";
- tokenizer: vocabulary, bos/eos/pad/unk, end-of-turn token, chat template and the token ids of
  every rendered prompt are identical.

The result is written as JSON (``parity.json`` next to the export) and a failed check raises
:class:`ParityError` (CLI exit status 1), never just a warning.

Tolerances per format live in :data:`TOLERANCES`; docs/export.md says how they were chosen.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from lmforge.atomic import atomic_write_text
from lmforge.model.generate import generate_tokens, stop_token_ids, template_end_of_turn


@dataclass(frozen=True)
class Tolerance:
    """Allowed max |logit difference| = ``atol + rtol * max|reference logits|``."""

    atol: float
    rtol: float

    def bound(self, scale: float) -> float:
        return self.atol + self.rtol * scale


# Keys: merged dtypes (float32/bfloat16/float16: reloaded and *run* in that dtype), GGUF outtypes
# (f32/f16/q8_0: weights rounded, dequantized to fp32 by transformers' loader), ONNX (fp32).
# Measured max |logit diff| vs the fp32 model on full SmolLM2-135M-Instruct (30 layers, max|logit|
# ~38, a ChatML prompt + 12-16 greedy tokens): merged bf16 1.27, merged fp16 0.22, GGUF f16 0.041,
# GGUF q8_0 1.32, f32/ONNX 0 to 1e-8. Each bound below is ~3-4x the measurement at that scale.
# The q8_0 and bf16 bounds are loose by nature; for them the greedy-generation check is the sharper one.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(atol=1e-4, rtol=1e-4),
    "f32": Tolerance(atol=1e-4, rtol=1e-4),
    "onnx": Tolerance(atol=1e-4, rtol=1e-4),
    "f16": Tolerance(atol=1e-2, rtol=4e-3),
    "float16": Tolerance(atol=5e-2, rtol=2e-2),
    "bfloat16": Tolerance(atol=1e-1, rtol=1e-1),
    "q8_0": Tolerance(atol=1e-1, rtol=1e-1),
}


class ParityError(Exception):
    """The exported model does not reproduce the run's model; ``result`` holds the details.

    Not a user-input problem: the CLI prints the message and exits with status 1.
    """

    exit_code = 1

    def __init__(self, message: str, result: "ParityResult"):
        super().__init__(message)
        self.result = result


@dataclass
class ParityResult:
    """Outcome of one parity check (JSON-serialisable with :meth:`to_dict`)."""

    format: str
    passed: bool
    max_abs_logit_diff: float
    logit_bound: float
    tolerance: dict[str, float]
    greedy_equal: bool
    tokenizer: dict[str, bool]
    generations: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the check (reload of the export included)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_parity(reference_model: Any, reference_tokenizer: Any, load_exported: Callable[[], tuple[Any, Any]],
                 prompts: Sequence[str | list[dict]], *, atol: float, rtol: float, max_new_tokens: int = 16,
                 fmt: str = "", report_path: str | Path | None = None) -> ParityResult:
    """Compare an exported model with the reference; write the result; raise on failure.

    reference_model: the model as evaluated (a transformers model, eval mode, on CPU).
    load_exported: returns ``(model, tokenizer)`` reloaded from the export through its own loader;
    the model is called as ``model(input_ids=..., attention_mask=..., [token_type_ids=...])`` and
    returns an object with ``.logits`` ([1, seq, vocab] for causal LMs, [1, labels] for classifiers).
    prompts: plain strings, or message lists rendered with the chat template (generation prompt added).
    Greedy generations are compared when ``reference_model.can_generate()``.
    report_path: where the JSON result goes (e.g. ``<export folder>/parity.json``); None: not written.
    Returns the :class:`ParityResult` when it passed; raises :class:`ParityError` otherwise.
    """
    if not prompts:
        raise ValueError("check_parity needs at least one prompt")
    start = time.perf_counter()
    tolerance = Tolerance(atol=atol, rtol=rtol)
    exported_model, exported_tokenizer = load_exported()
    failures: list[str] = []
    texts = [_render(reference_tokenizer, p) for p in prompts]
    tok_checks = compare_tokenizers(reference_tokenizer, exported_tokenizer, prompts)
    failures += [f"tokenizer: {name} differs" for name, ok in tok_checks.items() if not ok]
    diff, scale = 0.0, 0.0
    for text in texts:
        inputs = _encode(reference_tokenizer, text)
        ref, exp = _logits(reference_model, inputs), _logits(exported_model, inputs)
        if ref.shape != exp.shape:
            failures.append(f"logits shape {tuple(exp.shape)} != reference {tuple(ref.shape)}")
            diff = float("inf")
            continue
        diff = max(diff, float((ref - exp).abs().max()))
        scale = max(scale, float(ref.abs().max()))
    if not _can_generate(reference_model) and len(texts) > 1 and reference_tokenizer.pad_token is not None:
        # a padded batch of all prompts: dynamic batch/sequence axes and masking must hold too
        inputs = _encode(reference_tokenizer, texts)
        ref, exp = _logits(reference_model, inputs), _logits(exported_model, inputs)
        diff = max(diff, float((ref - exp).abs().max()) if ref.shape == exp.shape else float("inf"))
    bound = tolerance.bound(scale)
    if not diff <= bound:
        failures.append(f"max |logit diff| {diff:.3g} exceeds the {fmt or 'format'} bound {bound:.3g}")
    generations: list[dict[str, Any]] = []
    if _can_generate(reference_model):
        generations = compare_greedy(reference_model, exported_model, reference_tokenizer, texts, max_new_tokens, bound)
        failures += [f"greedy generation diverged on prompt {i}" for i, g in enumerate(generations)
                     if g["status"] == "diverged"]
    result = ParityResult(format=fmt, passed=not failures, max_abs_logit_diff=diff, logit_bound=bound,
                          tolerance={"atol": atol, "rtol": rtol}, tokenizer=tok_checks,
                          greedy_equal=all(g["status"] != "diverged" for g in generations),
                          generations=generations, failures=failures, seconds=round(time.perf_counter() - start, 3))
    if report_path is not None:
        atomic_write_text(report_path, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    if failures:
        raise ParityError(f"{fmt or 'export'} parity check failed: " + "; ".join(failures), result)
    return result


def leading_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    """The start of ``text`` that tokenizes to at most ``max_tokens`` tokens (all of it when shorter):
    a held-out document as a parity prompt, as long as training saw its chunks (``data.max_length``)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
    ids = enc["input_ids"]
    if len(ids) <= max_tokens:
        return text
    if tokenizer.is_fast:
        return text[: enc["offset_mapping"][max_tokens - 1][1]]
    return tokenizer.decode(ids[:max_tokens])


def compare_tokenizers(reference: Any, exported: Any, prompts: Sequence[str | list[dict]]) -> dict[str, bool]:
    """Name -> identical? for vocab, special tokens, end-of-turn, chat template and prompt ids."""
    checks = {"vocab": reference.get_vocab() == exported.get_vocab()}
    for name in ("bos", "eos", "pad", "unk"):
        checks[f"{name}_token"] = (_special(reference, name) == _special(exported, name))
    checks["chat_template"] = (getattr(reference, "chat_template", None) or None) == (
        getattr(exported, "chat_template", None) or None)
    checks["end_of_turn"] = (template_end_of_turn(reference) == template_end_of_turn(exported)
                             and stop_token_ids(reference) == stop_token_ids(exported))
    same_ids = True
    for prompt in prompts:
        try:
            exp_ids = _encode(exported, _render(exported, prompt))["input_ids"]
        except Exception:  # a template or tokenizer that cannot even render the prompt
            same_ids = False
            continue
        same_ids &= torch.equal(_encode(reference, _render(reference, prompt))["input_ids"], exp_ids)
    checks["prompt_ids"] = bool(same_ids)
    return checks


def _special(tokenizer: Any, name: str) -> tuple[Any, Any]:
    return getattr(tokenizer, f"{name}_token", None), getattr(tokenizer, f"{name}_token_id", None)


def _render(tokenizer: Any, prompt: str | list[dict]) -> str:
    """A plain prompt as is; a message list as training and evaluation render it (the tokenizer's
    chat template, or lmforge's built-in one when it has none), with the generation prompt."""
    if isinstance(prompt, str):
        return prompt
    from lmforge.data.chat import render_chat

    return render_chat(tokenizer, prompt, add_generation_prompt=True)


def _encode(tokenizer: Any, text: str | list[str]) -> dict[str, torch.Tensor]:
    """Token ids of ``text`` (a list: one padded batch) as the model takes them (its input names only)."""
    names = set(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=True, padding=isinstance(text, list))
    return {k: v for k, v in enc.items() if k in names | {"input_ids", "attention_mask"}}


@torch.no_grad()
def _logits(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs).logits.detach().float()


def _can_generate(model: Any) -> bool:
    can = getattr(model, "can_generate", None)
    return bool(can()) if callable(can) else False


def compare_greedy(reference: Any, exported: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int,
                   bound: float) -> list[dict[str, Any]]:
    """Greedy-decode every prompt with both models and classify each as equal / tie / diverged.

    Both models decode through lmforge's generation engine with a KV cache, in their own dtype
    (``precision="model"``: no autocast), the prompts batched the same way for both, stopping on
    the reference tokenizer's stop ids; each step's logits are kept for the tie test.
    """
    stops = stop_token_ids(tokenizer)
    prompts = [_encode(tokenizer, text)["input_ids"][0].tolist() for text in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)

    def greedy(model: Any) -> list:
        return generate_tokens(model, prompts, max_new_tokens=max_new_tokens, stop_ids=stops, pad_id=pad,
                               precision="model", keep_logits=True)

    return [_classify(tokenizer, text, ref, exp, bound) for text, ref, exp in zip(texts, greedy(reference), greedy(exported))]


def _classify(tokenizer: Any, text: str, ref: Any, exp: Any, bound: float) -> dict[str, Any]:
    """equal / tie (first divergence at a near tie both models' logits agree on) / diverged."""
    ref_ids, exp_ids = ref.all_tokens, exp.all_tokens
    status = "equal"
    if ref_ids != exp_ids:
        at = next((i for i, (a, b) in enumerate(zip(ref_ids, exp_ids)) if a != b), min(len(ref_ids), len(exp_ids)))
        status = "diverged"
        if at < len(ref_ids) and at < len(exp_ids):
            ref_step, exp_step = ref.logits[at], exp.logits[at]  # both saw the same prefix here
            near_tie = float(ref_step[ref_ids[at]] - ref_step[exp_ids[at]]) <= bound
            status = "tie" if near_tie and float((ref_step - exp_step).abs().max()) <= bound else "diverged"
    return {"prompt": text, "status": status, "reference_ids": ref_ids, "exported_ids": exp_ids,
            "reference": tokenizer.decode(ref_ids), "exported": tokenizer.decode(exp_ids)}


def load_merged(merged_dir: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a merged transformers folder, in the dtype it was saved in."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    archs = AutoConfig.from_pretrained(merged_dir).architectures or []
    auto = (AutoModelForSequenceClassification if any(a.endswith("ForSequenceClassification") for a in archs)
            else AutoModelForCausalLM)
    return auto.from_pretrained(merged_dir, dtype="auto").eval(), AutoTokenizer.from_pretrained(merged_dir)


def verify_merged(reference_model: Any, reference_tokenizer: Any, merged_dir: str | Path,
                  prompts: Sequence[str | list[dict]], *, dtype: str = "float32", max_new_tokens: int = 16,
                  report_path: str | Path | None = None) -> ParityResult:
    """Parity of a merged safetensors folder (reloaded by transformers, run in its saved ``dtype``)
    at ``TOLERANCES[dtype]``; writes ``report_path`` (default ``merged_dir/parity.json``)."""
    tol, merged_dir = TOLERANCES[dtype], Path(merged_dir)
    return check_parity(reference_model, reference_tokenizer, lambda: load_merged(merged_dir), prompts,
                        atol=tol.atol, rtol=tol.rtol, max_new_tokens=max_new_tokens, fmt=f"merged-{dtype}",
                        report_path=report_path or merged_dir / "parity.json")
