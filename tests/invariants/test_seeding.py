"""Same config + seed + machine -> same model, for every registered method and every objective.

Each case builds its session through the real glue (:func:`lmforge.pipeline.open_session`: data,
model, method, objective) and trains two optimizer steps with the real loop, twice; the global
random generators are scrambled between the two runs, so only run.seed can make them agree. All
final weights (trainable and frozen, classification heads, virtual tokens, adapters) must be
bit-identical. Tiny models, one thread.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from lmforge.methods import METHODS
from lmforge.objectives.registry import OBJECTIVES

QA = [("what is a bond?", "a loan to a company."), ("what is a stock?", "a share of a company."),
      ("what is credit?", "money you borrow."), ("is the rate good?", "yes, it is good.")] * 3
METHOD_PARAMS = {"freeze": {"last_layers": 1}, "lora": {"r": 4, "dropout": 0.1}, "qlora": {"r": 4, "dropout": 0.1},
                 "prompt_tuning": {"num_virtual_tokens": 4, "init": "random"}, "prefix_tuning": {"num_virtual_tokens": 4},
                 "p_tuning": {"num_virtual_tokens": 4}}
OBJECTIVE_DATA = {  # objective -> (data.format, rows, objective params)
    "causal_lm": ("instruction", [{"question": q, "answer": a} for q, a in QA], {}),
    "grpo": ("instruction", [{"question": q, "answer": a} for q, a in QA],
             {"reward": "REWARD_FILE:length", "group_size": 4, "max_new_tokens": 6}),
    "classification": ("classification", [{"text": q, "label": "yes" if i % 2 else "no"} for i, (q, _) in enumerate(QA)], {}),
    "kto": ("preference", [{"prompt": q, "chosen": a, "rejected": "no idea."} for q, a in QA], {}),
}
for _name in ("dpo", "simpo", "orpo", "reward"):
    OBJECTIVE_DATA[_name] = OBJECTIVE_DATA["kto"][:2] + ({},)


def _config(tmp_path, model_dir, method: str, objective: str, seed: int = 7):
    from lmforge.config import parse_config

    fmt, rows, params = OBJECTIVE_DATA[objective]
    data = tmp_path / f"{objective}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"instruction": "question", "output": "answer"} if fmt == "instruction" else {}
    if "reward" in params:  # sampled answers differ in length: a reward that varies within a group
        reward = tmp_path / "reward.py"
        reward.write_text("def length(prompt, completion, reference):\n    return float(len(completion))\n")
        params = {**params, "reward": params["reward"].replace("REWARD_FILE", str(reward))}
    return parse_config({
        "run": {"output_dir": str(tmp_path / "run"), "seed": seed},
        "model": {"name": str(model_dir)},
        "data": {"format": fmt, "train": str(data), "columns": columns, "split": {"validation": 0.2, "test": 0.2}, "max_length": 32},
        "method": {"name": method, **METHOD_PARAMS.get(method, {})},
        "objective": {"name": objective, **params},
        "train": {"max_steps": 2, "batch_size": 2, "lr": 0.05, "tensorboard": False, "warmup_ratio": 0.0},
        "runtime": {"precision": "fp32", "device": "cpu"},
        "eval": {"before": False},
    })


def _scramble_global_rngs() -> None:
    """Leave the process's generators somewhere a previous run would not have left them."""
    noise = random.SystemRandom().randrange(2**31)
    random.seed(noise)
    np.random.seed(noise)
    torch.manual_seed(noise)


def _train_twice(tmp_path, model_dir, method: str, objective: str) -> tuple[dict, dict, dict]:
    """(start weights of run 1, final weights of run 1, final weights of run 2)."""
    from lmforge.pipeline import open_session
    from lmforge.train import train

    out = []
    for attempt in range(2):
        _scramble_global_rngs()
        folder = tmp_path / str(attempt)
        folder.mkdir()
        config = _config(folder, model_dir, method, objective)
        s = open_session(config, say=lambda _m: None)
        start = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
        train(s.model, s.objective, s.train_features, train_cfg=config.train, runtime_cfg=config.runtime, run_dir=folder / "run", collate=s.collate,
              evaluate_fn=None, seed=config.run.seed, best_metric=s.plan.best_metric, metric_mode=s.plan.metric_mode)
        out.append((start, {k: v.detach().clone() for k, v in s.model.state_dict().items()}))
    return out[0][0], out[0][1], out[1][1]


def _assert_identical(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    differ = [k for k in first if not torch.equal(first[k], second[k])]
    assert not differ, f"{len(differ)} tensors differ between two runs with the same seed, e.g. {differ[:3]}"


def _model_for(objective: str, tiny_llama_dir, tiny_bert_dir):
    return tiny_bert_dir if OBJECTIVES[objective].head == "sequence_classification" and objective != "reward" \
        else tiny_llama_dir


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_identical_weights_from_the_same_seed(method, tmp_path, tiny_llama_dir):
    start, first, second = _train_twice(tmp_path, tiny_llama_dir, method, "causal_lm")
    _assert_identical(first, second)
    assert any(not torch.equal(start[k], first[k]) for k in start), "training changed nothing"


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_gives_identical_weights_from_the_same_seed(objective, tmp_path, tiny_llama_dir, tiny_bert_dir):
    start, first, second = _train_twice(tmp_path, _model_for(objective, tiny_llama_dir, tiny_bert_dir), "lora", objective)
    _assert_identical(first, second)
    assert any(not torch.equal(start[k], first[k]) for k in start), "training changed nothing"


def test_the_seed_reaches_the_adapter_initialisation(tmp_path, tiny_llama_dir):
    """Guard: LoRA's initial weights come from run.seed (another seed, other weights), so the tests
    above compare runs whose initialisation was random, not fixed."""
    from lmforge.pipeline import open_session

    inits = []
    for seed in (7, 8):
        _scramble_global_rngs()
        (tmp_path / str(seed)).mkdir()
        s = open_session(_config(tmp_path / str(seed), tiny_llama_dir, "lora", "causal_lm", seed=seed), say=lambda _m: None)
        inits.append({k: v.clone() for k, v in s.model.state_dict().items() if "lora_A" in k})
    assert inits[0] and any(not torch.equal(inits[0][k], inits[1][k]) for k in inits[0])
