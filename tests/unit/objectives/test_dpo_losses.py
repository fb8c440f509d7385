"""DPO / IPO / hinge / SimPO / ORPO loss math against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.objectives.dpo.losses import dpo_losses, orpo_losses, pair_metrics, simpo_losses
from lmforge.objectives.dpo.objective import summarize_pairs

T = torch.tensor


def test_sigmoid_is_log2_when_policy_equals_reference():
    pc, pr = T([-3.0, -7.5]), T([-4.0, -1.0])
    losses, chosen, rejected = dpo_losses(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    assert torch.allclose(losses, torch.full((2,), math.log(2)))
    assert torch.equal(chosen, torch.zeros(2)) and torch.equal(rejected, torch.zeros(2))


def test_sigmoid_matches_formula_and_label_smoothing():
    pc, pr, rc, rr = T([-2.0]), T([-5.0]), T([-3.0]), T([-4.0])
    h = (-2.0 + 3.0) - (-5.0 + 4.0)  # 2.0
    losses, chosen, rejected = dpo_losses(pc, pr, rc, rr, beta=0.5)
    assert losses.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.5 * h))), rel=1e-6)
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)
    smooth, _, _ = dpo_losses(pc, pr, rc, rr, beta=0.5, label_smoothing=0.2)
    expected = -0.8 * F.logsigmoid(T(1.0)) - 0.2 * F.logsigmoid(T(-1.0))
    assert smooth.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ipo_uses_token_means_and_hinge():
    pc, pr, rc, rr = T([-2.0]), T([-6.0]), T([-4.0]), T([-4.0])
    nc, nr = T([2]), T([4])
    ipo, _, _ = dpo_losses(pc, pr, rc, rr, beta=0.25, variant="ipo", n_chosen=nc, n_rejected=nr)
    h = (2.0 / 2) - (-2.0 / 4)  # 1.5
    assert ipo.item() == pytest.approx((h - 1 / (2 * 0.25)) ** 2)
    hinge, _, _ = dpo_losses(pc, pr, rc, rr, beta=0.25, variant="hinge")
    assert hinge.item() == pytest.approx(max(0.0, 1 - 0.25 * 4.0))
    with pytest.raises(ValueError):
        dpo_losses(pc, pr, rc, rr, beta=0.1, variant="nope")


def test_simpo_formula():
    losses, chosen, rejected = simpo_losses(T([-4.0]), T([-9.0]), T([2]), T([3]), beta=2.0, gamma=1.0)
    margin = 2.0 * (-2.0) - 2.0 * (-3.0) - 1.0  # 1.0
    assert losses.item() == pytest.approx(-F.logsigmoid(T(margin)).item(), rel=1e-6)
    assert chosen.item() == pytest.approx(-4.0) and rejected.item() == pytest.approx(-6.0)


def test_orpo_formula_and_gradient_prefers_chosen():
    pc = T([-2.0], requires_grad=True)
    pr = T([-3.0], requires_grad=True)
    losses, _, _ = orpo_losses(pc, pr, T([2]), T([2]), beta=0.5)
    a_w, a_l = -1.0, -1.5
    log_odds = (a_w - a_l) - (math.log(1 - math.exp(a_w)) - math.log(1 - math.exp(a_l)))
    expected = -a_w - 0.5 * math.log(1 / (1 + math.exp(-log_odds)))
    assert losses.item() == pytest.approx(expected, rel=1e-5)
    losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises the chosen, lowers the rejected log-prob


def test_pair_metrics_and_summary():
    metrics = pair_metrics(T([1.0, -1.0, 2.0]), T([0.0, 0.0, 2.0]))
    assert metrics["reward_accuracy"] == pytest.approx(1.5 / 3)  # right, wrong, a tie (half)
    assert metrics["reward_margin"] == pytest.approx(0.0)
    summary = summarize_pairs([[1.0, 0.0, -3.0, -5.0], [0.0, 2.0, -1.0, -1.0]])
    assert summary == {"reward_accuracy": 0.5, "reward_margin": -0.5, "logps_chosen": -2.0, "logps_rejected": -3.0,
                       "logps_accuracy": 0.5}
    # before training every implicit reward is 0: chance, not "always wrong"
    assert summarize_pairs([[0.0, 0.0, -3.0, -5.0]] * 3)["reward_accuracy"] == 0.5
