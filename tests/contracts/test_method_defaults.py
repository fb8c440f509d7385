"""Every registered method learns at its own default lr: a few optimizer steps on a tiny model lower
the training loss. (Quality at these defaults on real models: docs/methods.md, benchmarks/RESULTS.md.)

The loss is measured in eval mode (no dropout) before and after 8 AdamW steps on one fixed batch, at the
method's ``default_lr`` and at a rate 30x smaller: at the default it must fall, and fall further than at
the small rate (a default too large makes it rise or diverge; one far too small, as the single global
2e-4 was for prompt methods, makes no more progress than a 30x smaller one).
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
    assert after < after_small, (method_name, head, default, after, after_small)
