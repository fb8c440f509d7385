"""Reward model objective: Bradley-Terry math, scalar head, pairwise accuracy after training."""

import math

import pytest
import torch

from lmforge.config.schema import RuntimeConfig, TrainConfig
from lmforge.evaluate.run import evaluate
from lmforge.objectives.reward.objective import bradley_terry_losses
from lmforge.train import train
from tests.unit.objectives.preference_cases import PAIRS, PREF_DATA, model, objective, tokenizer


def test_bradley_terry_values_and_margin():
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    losses = bradley_terry_losses(chosen, rejected)
    assert losses[0].item() == pytest.approx(math.log(1 + math.exp(-1.0)))
    assert losses[1].item() == pytest.approx(math.log(2))
    with_margin = bradley_terry_losses(chosen, rejected, margin=1.0)
    assert with_margin[0].item() == pytest.approx(math.log(2))  # a gap of exactly the margin = no preference


def test_task_info_is_one_scalar_head():
    info = objective("reward").task_info(None)
    assert info.head == "sequence_classification" and info.num_labels == 1


def test_reward_model_learns_to_rank_pairs(tiny_llama_dir, tmp_path):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("reward")
    net = model(tiny_llama_dir, obj)
    assert net.config.num_labels == 1
    features = obj.encode(PAIRS, tok, PREF_DATA)
    collate = lambda f: obj.collate(f, tok)  # noqa: E731
    batch = collate(features)
    assert "labels" not in batch and batch["input_ids"].shape[0] == 2 * len(PAIRS)
    cfg = TrainConfig(max_steps=15, batch_size=4, lr=3e-3, warmup_ratio=0.0, scheduler="constant", tensorboard=False)
    train(net, obj, features, train_cfg=cfg, runtime_cfg=RuntimeConfig(precision="fp32", device="cpu"), run_dir=tmp_path, collate=collate, evaluate_fn=None, seed=0,
          best_metric="eval_loss", metric_mode="min")
    metrics = evaluate(obj, net, features, collate, batch_size=4)
    assert metrics["pairwise_accuracy"] == 1.0
    assert metrics["reward_margin"] > 0 and metrics["reward_chosen"] > metrics["reward_rejected"]
    assert metrics["eval_loss"] < math.log(2)


def test_eval_metrics_count_ties_as_wrong():
    from lmforge.objectives.base import EvalOutput

    obj = objective("reward")
    metrics = obj.eval_metrics([EvalOutput(0.0, 2, scores=[[1.0, 1.0], [2.0, 0.0]])])
    assert metrics["pairwise_accuracy"] == 0.5 and metrics["reward_margin"] == 1.0
