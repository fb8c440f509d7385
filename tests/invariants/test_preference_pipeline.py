"""Preference objectives through the real glue: config -> open_session -> train -> evaluate.

The steps are driven here one by one with the session the pipeline builds, so each one's result can be
checked; tests/contracts/test_pipeline.py runs every objective through run_train whole.
"""

from __future__ import annotations

import json

import pytest

from lmforge.config import load_config
from lmforge.pipeline import open_session
from lmforge.train import train
from tests.unit.objectives.preference_cases import PAIRS

CASES = {
    "dpo-full": ("dpo", "full", "preference", "reward_accuracy"),
    "dpo-lora": ("dpo", "lora", "preference", "reward_accuracy"),
    "reward-lora": ("reward", "lora", "preference", "pairwise_accuracy"),
    "kto-lora": ("kto", "lora", "preference", "reward_accuracy"),
    "simpo-full": ("simpo", "full", "preference", "reward_accuracy"),
    "grpo-lora": ("grpo", "lora", "instruction", "reward_mean"),
}


def _config(tmp_path, model_dir, objective, method, fmt):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS * 3))
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                          for q, a in [("what is the capital of france", "paris"), ("hello", "hi"), ("what is a bond", "a loan"),
                                       ("is it good", "yes")] * 2))
    data = (f"  train: {pairs}\n" if fmt == "preference"
            else f"  train: {qa}\n  columns: {{instruction: question, output: answer}}\n")
    extra = ("\n  reward: lmforge.objectives.grpo.rewards:contains_answer\n  max_new_tokens: 4\n  group_size: 2"
             if objective == "grpo" else "")
    path = tmp_path / "run.yaml"
    path.write_text(
        f"run: {{name: t, output_dir: {tmp_path / 'run'}}}\nmodel: {{name: {model_dir}}}\n"
        f"data:\n  format: {fmt}\n{data}  split: {{validation: 0.2, test: 0.2}}\n"
        f"method: {{name: {method}}}\nobjective:\n  name: {objective}{extra}\n"
        "train: {max_steps: 3, batch_size: 2, lr: 1.0e-3, tensorboard: false}\nruntime: {device: cpu, precision: fp32}\n"
        "eval: {generations: 0}\n"
    )
    return load_config(path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_preference_run_through_the_pipeline(tiny_llama_dir, tmp_path, case):
    objective, method, fmt, metric = CASES[case]
    config = _config(tmp_path, tiny_llama_dir, objective, method, fmt)
    s = open_session(config, say=lambda text: None)
    s.objective.bind(s.model, s.tokenizer)  # the hook the pipeline should call after method.apply
    before = s.evaluate(per_example=True)
    if objective in ("dpo", "kto"):  # the policy is the reference: every implicit reward exactly 0, accuracy at chance
        assert before["reward_margin"] == 0.0 and before["reward_accuracy"] == 0.5
    if objective == "dpo":
        assert {tuple(r[:2]) for r in before["per_example"]["score"]} == {(0.0, 0.0)}
    assert len(before["per_example"]["loss"]) == before["eval_examples"]  # one row per pair / example / prompt
    result = train(s.model, s.objective, s.train_features, train_cfg=config.train, runtime_cfg=config.runtime, run_dir=s.run_dir,
                   collate=s.collate, evaluate_fn=s.evaluate, seed=0, best_metric=s.plan.best_metric,
                   metric_mode=s.plan.metric_mode)
    after = s.evaluate()
    assert result.steps == 3
    assert metric in before and metric in after
    assert s.plan.best_metric in after
    assert (s.run_dir / "checkpoints" / "last").exists()
