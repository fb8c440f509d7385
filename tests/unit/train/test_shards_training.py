"""train() over memory-mapped token shards gives the same losses as over in-memory features."""

from __future__ import annotations

import torch

from lmforge.config.schema import ModelConfig, RuntimeConfig, TrainConfig
from lmforge.data.packing import pack_features
from lmforge.data.shards import TokenShards, encode_to_shards, write_token_shards
from lmforge.methods import METHODS, build_method
from lmforge.model import load_model
from lmforge.model.task import TaskInfo
from lmforge.objectives import build_objective
from lmforge.objectives.registry import get_objective_spec
from lmforge.train import train
from tests.fixtures.callbacks import LossRecorder as _Losses


class _Pad:
    pad_token_id = 0


def _features(n=40):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        length = int(torch.randint(4, 20, (1,), generator=g))
        ids = torch.randint(3, 60, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100, -100] + ids[2:]})
    return out


def _losses(model_dir, features, tmp_path):
    task = TaskInfo("causal_lm")
    torch.manual_seed(0)  # the LoRA init draws from the global RNG
    method = build_method("lora", METHODS["lora"].params())
    model = method.apply(load_model(ModelConfig(name=str(model_dir)), task), task)
    objective = build_objective("causal_lm", get_objective_spec("causal_lm").params())
    cfg = TrainConfig(max_steps=6, batch_size=4, grad_accum=2, lr=1e-2, tensorboard=False, log_every=100)
    spy = _Losses()
    train(model, objective, features, train_cfg=cfg, runtime_cfg=RuntimeConfig(device="cpu", precision="fp32"), run_dir=tmp_path, collate=lambda f: objective.collate(f, _Pad()),
          evaluate_fn=None, seed=0, best_metric="eval_loss", metric_mode="min", callbacks=[spy])
    return spy.values


def test_training_over_shards_equals_training_over_a_list(tiny_llama_dir, tmp_path):
    features = _features()
    write_token_shards(iter(features), tmp_path / "shards", shard_tokens=64)
    shards = TokenShards(tmp_path / "shards")
    in_memory = _losses(tiny_llama_dir, features, tmp_path / "a")
    mapped = _losses(tiny_llama_dir, shards, tmp_path / "b")
    assert len(in_memory) == 6
    assert mapped == in_memory


def test_packed_shards_train_like_packed_lists(tiny_llama_dir, tmp_path):
    features = _features()
    packed = pack_features(features, 48)
    records = [{"i": i} for i in range(len(features))]
    shards = encode_to_shards(records, lambda part: [features[r["i"]] for r in part], tmp_path / "p", key={},
                              pack_length=48, block=len(records))
    assert len(shards) == len(packed) and "lengths" in shards[0]
    assert _losses(tiny_llama_dir, shards, tmp_path / "b") == _losses(tiny_llama_dir, packed, tmp_path / "a")
