from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from lmforge.objectives import build_objective
from lmforge.objectives.causal_lm.chunked import full_causal_lm_loss
from lmforge.objectives.causal_lm.config import CausalLMParams

FEATURES = [
    {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9]},
    {"input_ids": [10, 11, 12], "labels": [-100, 11, 12]},
]


def _objective():
    return build_objective("causal_lm", CausalLMParams())


def _model(tiny_llama_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)


def test_task_info_is_causal_lm():
    assert _objective().task_info(None).head == "causal_lm"


def test_collate_pads_and_packs():
    tok = SimpleNamespace(pad_token_id=0)
    batch = _objective().collate(FEATURES, tok)
    assert batch["input_ids"].shape == (2, 5) and batch["labels"][1].tolist() == [-100, 11, 12, -100, -100]
    packed = _objective().collate([{**FEATURES[0], "lengths": [2, 3]}], tok)
    assert "attention_mask" not in packed and packed["position_ids"].tolist() == [[0, 1, 0, 1, 2]]


def test_loss_is_the_sum_over_trained_shifted_tokens(tiny_llama_dir):
    objective, model = _objective(), _model(tiny_llama_dir)
    batch = objective.collate(FEATURES, SimpleNamespace(pad_token_id=0))
    assert objective.count(batch) == 5  # 3 + 2 trained labels, none at position 0
    out = objective.loss(model, batch)
    assert out.count == 5 and out.total.requires_grad
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    reference, count = full_causal_lm_loss(logits, batch["labels"])
    assert count == 5 and torch.allclose(out.total, reference, atol=1e-5)
    evaluated = objective.eval_step(model, batch)
    assert evaluated.count == 5 and math.isclose(evaluated.loss_total, float(reference), rel_tol=1e-5)
    assert evaluated.predictions == []
