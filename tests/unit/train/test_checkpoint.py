from __future__ import annotations

import shutil

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from lmforge.config.schema import TrainConfig
from lmforge.errors import UserError
from lmforge.train.checkpoint import (find_resume_dir, load_checkpoint, load_trainable, remove_stale_temporaries,
                                      save_checkpoint)
from lmforge.train.optim import build_optimizer, build_scheduler
from lmforge.train.state import LoopState


def _setup(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    model[2].requires_grad_(False)
    cfg = TrainConfig(lr=0.05, warmup_ratio=0.25, weight_decay=0.1)
    opt = build_optimizer(model, cfg)
    return model, opt, build_scheduler(opt, cfg, total_steps=8)


def _step(model, opt, sched):
    model(torch.randn(3, 4)).pow(2).sum().backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_round_trip_restores_weights_optimizer_scheduler_rng_and_state(tmp_path):
    model, opt, sched = _setup(0)
    for _ in range(3):
        _step(model, opt, sched)
    state = LoopState(step=3, epoch=1, position=2, best_value=0.5, best_step=2, bad_evals=1, history=[{"step": 2}])
    folder = save_checkpoint(tmp_path / "checkpoints" / "last", model, state, opt, sched)
    assert json.loads((folder / "state.json").read_text())["position"] == 2
    expected_rng = (random.random(), np.random.rand(), torch.rand(1).item())
    _step(model, opt, sched)
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}

    other, opt2, sched2 = _setup(1)
    other[2].load_state_dict(model[2].state_dict())  # frozen: not in the checkpoint, same base weights
    restored = load_checkpoint(find_resume_dir(tmp_path), other, opt2, sched2)
    assert restored == state
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_rng
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["weight_decay"] == 0.1 and sched2.last_epoch == 3
    _step(other, opt2, sched2)  # same RNG draw, same Adam moments -> same update
    for name, value in other.named_parameters():
        if value.requires_grad:
            assert torch.equal(value, expected[name]), name
    assert torch.equal(s1["state"][0]["exp_avg_sq"], opt2.state_dict()["state"][0]["exp_avg_sq"])


def test_only_trainable_params_are_saved_and_loaded(tmp_path):
    model, _, _ = _setup(0)
    save_checkpoint(tmp_path / "best", model, LoopState())
    fresh, _, _ = _setup(1)
    frozen_before = fresh[2].weight.detach().clone()
    load_trainable(fresh, tmp_path / "best")
    assert torch.equal(fresh[0].weight, model[0].weight)
    assert torch.equal(fresh[2].weight, frozen_before)


def test_a_half_swapped_checkpoint_is_still_found(tmp_path):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path / "checkpoints" / "last", model, LoopState(step=4), opt, sched)
    (tmp_path / "checkpoints" / "last").rename(tmp_path / "checkpoints" / ".last.old")
    assert find_resume_dir(tmp_path).name == ".last.old"
    assert find_resume_dir(tmp_path / "nothing") is None


def test_an_incomplete_last_falls_back_to_the_previous_complete_checkpoint(tmp_path):
    model, opt, sched = _setup(0)
    checkpoints = tmp_path / "checkpoints"
    save_checkpoint(checkpoints / "last", model, LoopState(step=4), opt, sched)
    shutil.copytree(checkpoints / "last", checkpoints / ".last.old")
    (checkpoints / "last" / "rng.safetensors").unlink()
    said = []
    assert find_resume_dir(tmp_path, say=said.append).name == ".last.old"
    assert "lacks rng.safetensors" in said[0] and "falling back" in said[0]


def test_no_complete_checkpoint_names_what_is_missing_and_how_to_start_over(tmp_path):
    model, opt, sched = _setup(0)
    save_checkpoint(tmp_path / "checkpoints" / "last", model, LoopState(step=4), opt, sched)
    (tmp_path / "checkpoints" / "last" / "optimizer.safetensors").unlink()
    (tmp_path / "checkpoints" / "last" / "scheduler.json").write_text("")
    with pytest.raises(UserError) as info:
        find_resume_dir(tmp_path)
    assert "lacks optimizer.safetensors, scheduler.json" in str(info.value)
    assert "remove" in str(info.value) and "without --resume" in str(info.value)


def test_resume_removes_what_a_killed_checkpoint_write_left(tmp_path):
    model, opt, sched = _setup(0)
    checkpoints = tmp_path / "checkpoints"
    save_checkpoint(checkpoints / "last", model, LoopState(step=4), opt, sched)
    (checkpoints / ".last.k2j4x9_a.tmp").mkdir()
    (checkpoints / ".last.k2j4x9_a.tmp" / "model.safetensors").write_bytes(b"half")
    (checkpoints / ".best.abcdefgh.tmp").mkdir()
    (checkpoints / ".last.old").mkdir()  # last is complete: the old one is not needed
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 3
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last"]


def test_a_damaged_checkpoint_file_is_a_user_error(tmp_path):
    model, opt, sched = _setup(0)
    folder = save_checkpoint(tmp_path / "last", model, LoopState(step=1), opt, sched)
    (folder / "optimizer.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot resume from this checkpoint"):
        load_checkpoint(folder, model, opt, sched)
    (folder / "model.safetensors").write_bytes(b"\x00" * 8)
    with pytest.raises(UserError, match="model.safetensors"):
        load_trainable(model, folder)
