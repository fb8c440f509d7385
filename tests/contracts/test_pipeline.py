"""Every registered method x every objective it claims, through the whole training pipeline.

``lmforge.pipeline.run_train`` on tiny in-process models (2 layers, hidden 32) and a few examples,
one optimizer step: load -> apply the method -> before -> train -> after -> report -> export
(adapter, and the merged model with its parity check where the method merges) -> the drift
baseline `lmforge monitor` compares traffic with. Each objective runs on the first data format it
declares (kto also on its second, classification ratings). The per-method tensor contract
(apply / backward / save / load / merge) is tests/contracts/test_methods.py.

A new method or objective is covered by registering it; a combination that the plan refuses must
refuse with a UserError naming the field (never a crash part way through a run).
"""

from __future__ import annotations

import json

import pytest

from lmforge.data.formats import formats_of

from lmforge.errors import UserError
from lmforge.methods import METHODS
from lmforge.objectives import OBJECTIVES

QA = [("what is the capital of france", "paris"), ("hello", "hi thanks"), ("what is a bond", "a loan"),
      ("is this food good", "yes it is great")]
PAIRS = [
    {"prompt": "what is the capital of france", "chosen": "paris", "rejected": "the bank"},
    {"prompt": "hello", "chosen": "hi thanks", "rejected": "no"},
    {"prompt": "is this food good", "chosen": "yes it is great", "rejected": "i hate this"},
    {"prompt": "what is a bond", "chosen": "a loan with interest", "rejected": "a card"},
]
REVIEWS = [("the food is good i love it", "great"), ("bad taste i hate it", "other"),
           ("what a great price", "great"), ("terrible product", "other")]

# Parameters a method needs to have something to train on a tiny model (tied embeddings: freeze
# must unfreeze a block for a causal LM).
METHOD_PARAMS = {"freeze": "last_layers: 1", "lora": "r: 4", "qlora": "r: 4", "prompt_tuning": "num_virtual_tokens: 4",
                 "p_tuning": "num_virtual_tokens: 4", "prefix_tuning": "num_virtual_tokens: 4"}
OBJECTIVE_PARAMS = {"grpo": "reward: lmforge.objectives.grpo.rewards:contains_answer, max_new_tokens: 4, group_size: 2"}


def _cases():
    for method, mspec in sorted(METHODS.items()):
        for objective, ospec in sorted(OBJECTIVES.items()):
            if mspec.objectives is not None and objective not in mspec.objectives:
                continue
            consumed = formats_of(ospec.kinds)
            formats = consumed if objective == "kto" else [_format(consumed)]
            for fmt in formats:
                yield pytest.param(method, objective, fmt, id=f"{method}-{objective}-{fmt}")


def _format(formats: list[str]) -> str:
    """Instruction data where an objective takes it (the common SFT case), else its first format."""
    return "instruction" if "instruction" in formats else formats[0]


def _data(tmp_path, fmt: str, objective: str) -> str:
    path = tmp_path / f"{fmt}.jsonl"
    if fmt == "preference":
        rows = PAIRS * 3
        cols = ""
    elif fmt == "classification" and objective == "kto":  # ratings: prompt, answer, good / bad
        rows = [{"text": p["prompt"], "text_pair": p[side], "label": "good" if side == "chosen" else "bad"}
                for p in PAIRS * 2 for side in ("chosen", "rejected")]
        cols = ""
    elif fmt == "classification":
        rows = [{"review": t, "score": label} for t, label in REVIEWS * 3]
        cols = "  columns: {text: review, label: score}\n"
    else:
        rows = [{"question": q, "answer": a} for q, a in QA * 3]
        cols = "  columns: {instruction: question, output: answer}\n"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"data:\n  format: {fmt}\n  train: {path}\n{cols}  split: {{validation: 0.2, test: 0.2}}\n  max_length: 32\n"


def _forgetting(tmp_path, objective: str) -> str:
    """Causal LM runs also score a general-text set before and after (eval.forgetting)."""
    if objective != "causal_lm":
        return ""
    path = tmp_path / "general.jsonl"
    path.write_text("".join(json.dumps({"text": f"the {w} is good and the price is great"}) + "\n"
                            for w in ("food", "bank", "fund")))
    return f", forgetting: {path}"


def _config(tmp_path, model_dir, method: str, objective: str, fmt: str):
    from lmforge.config import load_config

    params = METHOD_PARAMS.get(method, "")
    oparams = OBJECTIVE_PARAMS.get(objective, "")
    path = tmp_path / "run.yaml"
    path.write_text(
        f"run: {{name: t, output_dir: {tmp_path / 'run'}, seed: 0}}\nmodel: {{name: {model_dir}}}\n"
        + _data(tmp_path, fmt, objective)
        + f"method: {{name: {method}{', ' + params if params else ''}}}\n"
        + f"objective: {{name: {objective}{', ' + oparams if oparams else ''}}}\n"
        + "train: {max_steps: 1, batch_size: 3, lr: 1.0e-3, tensorboard: false}\nruntime: {device: cpu}\n"
        + "eval: {generations: 1, max_new_tokens: 4" + _forgetting(tmp_path, objective) + "}\n"
        + "export: {parity_prompts: 1}\n")
    return load_config(path)


@pytest.mark.parametrize(("method", "objective", "fmt"), list(_cases()))
def test_every_method_and_objective_trains_exports_and_writes_a_drift_baseline(
        method, objective, fmt, tiny_llama_dir, tiny_bert_dir, tmp_path):
    from lmforge.pipeline import run_train

    model_dir = tiny_bert_dir if OBJECTIVES[objective].head == "sequence_classification" and fmt == "classification" \
        else tiny_llama_dir
    config = _config(tmp_path, model_dir, method, objective, fmt)
    try:
        report = run_train(config, say=lambda _text: None)
    except UserError as exc:  # a refused combination names the field it comes from
        assert exc.where, exc
        pytest.fail(f"{method} x {objective} ({fmt}) refused: {exc}")
    run = tmp_path / "run"
    assert report["train"]["steps"] == 1
    results = json.loads((run / "results.json").read_text())
    assert results["after"]["eval_examples"] >= 1 and OBJECTIVES[objective].default_metric in results["after"]
    export = run / "export"
    assert (export / "README.md").is_file()
    if method != "full":
        assert any((export / "adapter").iterdir())
    if METHODS[method].mergeable:
        assert (export / "merged").is_dir() and json.loads((export / "merged" / "parity.json").read_text())["passed"]
    if objective == "causal_lm":
        assert results["forgetting"]["after"]["general_loss"] > 0
    baseline = json.loads((run / "monitor" / "baseline.json").read_text())
    assert baseline["n"] >= 1 and baseline["embeddings"], baseline.keys()
    width = len(baseline["embeddings"][0])
    assert all(len(e) == width for e in baseline["embeddings"])
    assert all(n >= 1 for n in baseline["scalars"]["input_tokens"])
