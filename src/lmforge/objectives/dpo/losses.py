"""Per-pair losses of the DPO family. Pure tensor math on summed completion log-probs.

Inputs are (B,) fp32 tensors: ``policy_*`` / ``ref_*`` = summed log-probs of the chosen /
rejected completion under the policy / reference, ``n_*`` = their completion token counts.
Each function returns ``(losses, chosen_rewards, rejected_rewards)``, all (B,); the rewards are
the implicit rewards the method defines (detached), used for accuracy and margin metrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, beta: float, variant: str = "sigmoid",
               label_smoothing: float = 0.0, n_chosen=None, n_rejected=None):
    """DPO (Rafailov et al. 2023) and its IPO / hinge variants.

    h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))
    sigmoid: -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)  (eps = label_smoothing, cDPO)
    ipo:     (h' - 1 / (2 beta))^2 with h' built from per-token mean log-probs (Azar et al. 2023)
    hinge:   max(0, 1 - beta h)  (SLiC)
    At policy == reference, h = 0 and the sigmoid loss is log 2.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    if variant == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif variant == "ipo":
        h_mean = chosen_ratio / n_chosen.clamp(min=1) - rejected_ratio / n_rejected.clamp(min=1)
        losses = (h_mean - 1.0 / (2.0 * beta)) ** 2
    elif variant == "hinge":
        losses = torch.relu(1.0 - beta * h)
    else:
        raise ValueError(f"unknown DPO loss variant '{variant}'")
    return losses, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def simpo_losses(policy_chosen, policy_rejected, n_chosen, n_rejected, *, beta: float, gamma: float):
    """SimPO (Meng et al. 2024), reference-free: -log sigmoid(beta (avg_w - avg_l) - gamma).

    avg = summed log-prob / completion tokens; rewards are beta * avg.
    """
    chosen = beta * policy_chosen / n_chosen.clamp(min=1)
    rejected = beta * policy_rejected / n_rejected.clamp(min=1)
    losses = -F.logsigmoid(chosen - rejected - gamma)
    return losses, chosen.detach(), rejected.detach()


def orpo_losses(policy_chosen, policy_rejected, n_chosen, n_rejected, *, beta: float):
    """ORPO (Hong et al. 2024), reference-free: NLL(y_w) - beta log sigmoid(log odds ratio).

    With per-token mean log-probs a_w, a_l: log odds(y) = a - log(1 - exp(a)); the NLL term is
    -a_w (mean token NLL of the chosen answer). Rewards are beta * log odds.
    """
    avg_chosen = policy_chosen / n_chosen.clamp(min=1)
    avg_rejected = policy_rejected / n_rejected.clamp(min=1)
    log_odds = (avg_chosen - avg_rejected) - (_log1m_exp(avg_chosen) - _log1m_exp(avg_rejected))
    losses = -avg_chosen - beta * F.logsigmoid(log_odds)
    chosen_odds = avg_chosen - _log1m_exp(avg_chosen)
    rejected_odds = avg_rejected - _log1m_exp(avg_rejected)
    return losses, (beta * chosen_odds).detach(), (beta * rejected_odds).detach()


def _log1m_exp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable (clamped away from 0 where exp(x) -> 1)."""
    x = x.clamp(max=-1e-6)
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def pair_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """Mean reward accuracy (chosen > rejected, a tie counting half) and margin (chosen - rejected) of a batch."""
    diff = (chosen_rewards - rejected_rewards).float()
    return {"reward_accuracy": float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean()),
            "reward_margin": float(diff.mean())}
