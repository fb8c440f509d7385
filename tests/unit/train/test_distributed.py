"""Distribution pieces that need no second process: environment, sharding, launch command,
the single-process runtime staying a no-op, the distributed config section."""

from __future__ import annotations

import sys

import pytest
import torch

from lmforge.config.schema import RuntimeConfig, TrainConfig
from lmforge.train.distributed import ProcessInfo, RootForward, process_info, shard_window
from lmforge.train.launch import launched, strip_nproc, torchrun_command
from lmforge.train.runtime import Runtime


def test_process_info_from_the_torchrun_environment():
    assert process_info({}) == ProcessInfo(0, 1, 0)
    assert process_info({"WORLD_SIZE": "1", "RANK": "0"}).world_size == 1
    info = process_info({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (3, 4, 1, False)
    assert process_info({"WORLD_SIZE": "2", "RANK": "0"}).is_main


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_each_example_once_and_keep_ranks_in_step(world):
    window = [list(range(0, 7)), list(range(7, 9)), [9]]
    parts = [shard_window(window, rank, world) for rank in range(world)]
    assert all(len(p) == len(window) for p in parts)  # same number of micro-batches everywhere
    for m, micro in enumerate(window):
        real = [i for p in parts for i in p[m][0] if p[m][1] == 1.0]
        assert sorted(real) == micro  # each example trained exactly once per window
        assert all(p[m][0] for p in parts)  # never an empty micro-batch (placeholder instead)
        placeholders = [p[m] for p in parts if p[m][1] == 0.0]
        assert len(placeholders) == max(0, world - len(micro))


def test_strip_nproc_and_torchrun_command():
    argv = ["train", "run.yaml", "--nproc", "2", "train.lr=1e-4", "--nproc=3", "--resume"]
    assert strip_nproc(argv) == ["train", "run.yaml", "train.lr=1e-4", "--resume"]
    cmd = torchrun_command(argv, 2, python="py")
    assert cmd[:3] == ["py", "-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc_per_node") + 1] == "2" and "--standalone" in cmd
    assert cmd[-5:] == ["lmforge.cli.main", "train", "run.yaml", "train.lr=1e-4", "--resume"]
    assert torchrun_command(["train", "x.yaml"], 1)[0] == sys.executable
    with pytest.raises(ValueError):
        torchrun_command(["train"], 0)


def test_launched_reads_world_size(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched()


def test_single_process_runtime_is_a_no_op():
    runtime = Runtime(torch.device("cpu"), "fp32")
    model = torch.nn.Linear(3, 2)
    assert runtime.prepare(model) is model  # no wrapper for one process
    assert runtime.is_main and runtime.world_size == 1 and runtime.grad_scale() == 1.0
    assert runtime.shard([[4, 5], [6]]) == [([4, 5], 1.0), ([6], 1.0)]
    assert runtime.global_sum([3.0, 4.5]) == [3.0, 4.5]
    assert runtime.evaluate(lambda m: {"eval_loss": 1.5}, model) == {"eval_loss": 1.5}
    assert runtime.callbacks(["writer"], ["user"]) == ["writer", "user"]
    with runtime.sync(model, last=False):
        model(torch.ones(1, 3)).sum().backward()
    assert model.weight.grad is not None
    assert runtime.clip_grad_norm(list(model.parameters()), 1e-6) > 1e-6  # the norm BEFORE clipping
    assert float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()) == pytest.approx(1e-6, rel=1e-3)


def test_non_main_rank_drops_writers_but_keeps_user_callbacks():
    runtime = Runtime(torch.device("cpu"), "fp32", process=ProcessInfo(1, 2, 1))
    assert not runtime.is_main
    assert runtime.callbacks(["writer"], ["user"]) == ["user"]
    assert runtime.shard([[1, 2, 3]]) == [([2], 1.0)]
    assert runtime.grad_scale() == 2.0


def test_root_forward_runs_the_wrapped_module_and_hides_its_decoder():
    inner = torch.nn.Linear(2, 2)
    inner.get_decoder = lambda: inner
    wrapper = RootForward(inner)
    x = torch.ones(1, 2)
    assert torch.equal(wrapper(x), inner(x))
    assert not hasattr(wrapper, "get_decoder")  # objectives take the full forward path


def test_distributed_config_defaults_and_strictness():
    cfg = RuntimeConfig()
    assert (cfg.distributed.strategy, cfg.distributed.backend) == ("ddp", "auto")
    assert RuntimeConfig(distributed={"strategy": "fsdp"}).distributed.strategy == "fsdp"
    with pytest.raises(ValueError):
        RuntimeConfig(distributed={"strategy": "deepspeed"})
    with pytest.raises(ValueError):
        RuntimeConfig(distributed={"stratgy": "ddp"})
