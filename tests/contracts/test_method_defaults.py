"""Every registered method learns at its own default lr: a few optimizer steps on a tiny model lower
the training loss. (Quality at these defaults on real models: docs/methods.md, benchmarks/RESULTS.md.)

The loss is measured in eval mode (no dropout) before and after 8 AdamW steps on one fixed batch, at the
method's ``default_lr`` and at a rate 30x smaller: at the default it must fall, by at least half as much
as at the small rate (a default too large makes it rise or diverge). Half, not all: 8 steps on one batch
of a tiny random model are not where a default is chosen (benchmarks/method_defaults.py chooses on real
models and data), and prompt tuning's 0.3, the rate that learns sentiment on MiniLM, overshoots the tiny
model's small embeddings slightly (loss 4.87 vs 4.86 at 0.01 on the tiny causal LM).
"""

from __future__ import annotations

import pytest
import torch

from lmforge.config.schema import TrainConfig
from lmforge.methods import METHODS
from lmforge.train.optim import build_optimizer
from tests.contracts.cases import CONTRACT_PARAMS, fresh_base, make_batch, task_for
from tests.contracts.test_methods import _cases, _method

STEPS = 8


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def _trained_loss(method_name: str, head: str, dirs: dict, lr: float) -> tuple[float, float]:
    """(loss before, loss after ``STEPS`` AdamW steps at ``lr``) of a fresh tiny model with the method applied."""
    method = _method(method_name)
    model = method.apply(fresh_base(head, dirs, **method.load_kwargs()), task_for(head))
    batch = make_batch(head, dirs)
    optimizer = build_optimizer(model, TrainConfig(lr=lr))
    torch.manual_seed(0)
    before = _loss(model, batch)
    for _ in range(STEPS):
        model.train()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return before, _loss(model, batch)


@pytest.mark.parametrize(("method_name", "head"), list(_cases()))
def test_a_few_steps_at_the_default_lr_lower_the_training_loss(method_name, head, dirs):
    default = METHODS[method_name].default_lr
    before, after = _trained_loss(method_name, head, dirs, default)
    _, after_small = _trained_loss(method_name, head, dirs, default / 30)
    assert after < before, (method_name, head, CONTRACT_PARAMS.get(method_name), before, after)
    assert before - after >= 0.5 * (before - after_small), (method_name, head, default, before, after, after_small)
