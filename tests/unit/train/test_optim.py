from __future__ import annotations

import pytest
import torch
from torch import nn

from lmforge.config.schema import TrainConfig
from lmforge.train.optim import build_optimizer, build_scheduler, lr_factor, param_groups


def test_warmup_then_cosine_reaches_zero():
    f = [lr_factor(s, 10, 2, "cosine") for s in range(11)]
    assert f[0] == pytest.approx(1 / 3) and f[1] == pytest.approx(2 / 3) and f[2] == 1.0
    assert all(a >= b for a, b in zip(f[2:], f[3:]))
    assert f[6] == pytest.approx(0.5) and f[10] == pytest.approx(0.0)


def test_linear_and_constant_shapes():
    lin = [lr_factor(s, 5, 0, "linear") for s in range(5)]
    assert lin == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert [lr_factor(s, 5, 1, "constant") for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]


def test_scheduler_drives_optimizer_lr():
    model = nn.Linear(2, 2)
    cfg = TrainConfig(lr=0.1, warmup_ratio=0.2, scheduler="linear")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(0.1 / 3) and seen[2] == pytest.approx(0.1)  # 2 warmup steps
    assert seen[-1] == pytest.approx(0.1 * 1 / 8) and opt.param_groups[0]["lr"] == pytest.approx(0.0)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_no_decay_on_biases_and_norms_and_frozen_params_excluded():
    model = Block()
    groups = param_groups(model, weight_decay=0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p is model.proj.weight for p in decay["params"]] == [True]
    assert {id(p) for p in no_decay["params"]} == {id(model.proj.bias), id(model.norm.weight), id(model.norm.bias)}
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1))
    assert sum(len(g["params"]) for g in opt.param_groups) == 4


def test_no_trainable_params_is_an_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(model, TrainConfig())
