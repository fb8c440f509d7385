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


def test_adamw_is_fused_on_one_cpu_device_and_matches_the_reference_update():
    """Fused AdamW (HF Trainer's default too) on CPU; its update equals torch's single-tensor AdamW up to
    fp32 rounding: a few ulps of the parameter per step (atol 1e-6 on values of order 1)."""
    torch.manual_seed(0)
    model, reference = Block(), Block()
    reference.load_state_dict(model.state_dict())
    opt = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1))
    assert opt.defaults["fused"] is True
    ref = torch.optim.AdamW(param_groups(reference, 0.1), lr=1e-2, foreach=False)
    x = torch.randn(8, 4)
    for _ in range(3):
        for m, o in ((model, opt), (reference, ref)):
            o.zero_grad()
            m.norm(m.proj(x)).pow(2).sum().backward()
            o.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_no_trainable_params_is_an_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(model, TrainConfig())


def _regression_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 1))  # 8192-element weight: 8-bit state


def _fit(model, opt, steps=30):
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    y = x[:, :1] * 2.0
    losses = []
    for _ in range(steps):
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("name", ["adamw_8bit", "paged_adamw_8bit"])
def test_8bit_adamw_keeps_uint8_state_and_trains_on_cpu(name):
    bnb = pytest.importorskip("bitsandbytes")
    model = _regression_model()
    opt = build_optimizer(model, TrainConfig(lr=1e-2, optimizer=name))
    assert isinstance(opt, bnb.optim.optimizer.Optimizer8bit)
    losses = _fit(model, opt)
    assert losses[-1] < 0.3 * losses[0]
    state = opt.state[model[0].weight]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8


def test_8bit_adamw_matches_fp32_adamw_closely():
    pytest.importorskip("bitsandbytes")
    fp32_model, q_model = _regression_model(), _regression_model()
    fp32 = _fit(fp32_model, build_optimizer(fp32_model, TrainConfig(lr=1e-2)))
    q = _fit(q_model, build_optimizer(q_model, TrainConfig(lr=1e-2, optimizer="adamw_8bit")))
    assert q[-1] == pytest.approx(fp32[-1], rel=0.25, abs=1e-2)


def test_8bit_adamw_checkpoint_round_trip(tmp_path):
    pytest.importorskip("bitsandbytes")
    from lmforge.train.checkpoint import load_checkpoint, save_checkpoint
    from lmforge.train.state import LoopState

    cfg = TrainConfig(lr=1e-2, optimizer="adamw_8bit")
    model = _regression_model()
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=20)
    _fit(model, opt, steps=5)
    save_checkpoint(tmp_path / "ck", model, LoopState(step=5), opt, sched)
    expected = _fit(model, opt, steps=3)

    restored = _regression_model()
    opt2 = build_optimizer(restored, cfg)
    load_checkpoint(tmp_path / "ck", restored, opt2, build_scheduler(opt2, cfg, total_steps=20))
    key = restored[0].weight
    assert opt2.state[key]["state1"].dtype == torch.uint8
    assert _fit(restored, opt2, steps=3) == pytest.approx(expected, rel=1e-6)
