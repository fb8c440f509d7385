"""Two CPU processes (gloo, 1 thread each; forked from the test, and once through torchrun) train like one process with the same global
batch, and a checkpoint written by two processes resumes in one to the same final weights.

Both runs use 19 variable-length examples, micro-batches of 3 and accumulation 2 (global window
6 examples): the last micro-batch of the epoch holds one example, so rank 1 gets a zero-weight
placeholder there and the unit counts must be reduced over processes for the math to match.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.invariants.test_loop import fp32_cfg, params_of, run, tiny_features, tiny_model

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "invariants" / "ddp_worker.py"
CFG = dict(max_steps=4, batch_size=3, grad_accum=2, save_every=2, n_features=19)
TOL = dict(rtol=1e-4, atol=1e-5)


def launch_workers(nproc: int, model_dir, run_dir: Path, options: dict, *extra: str, timeout: int = 120):
    """Run ddp_worker.py under torchrun with ``nproc`` CPU processes; return the completed process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc_per_node", str(nproc), "--max-restarts", "0",
           str(WORKER), str(model_dir), str(run_dir), json.dumps(options), *extra]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def fork_workers(nproc: int, model_dir, run_dir: Path, options: dict, *extra: str) -> None:
    """Run ddp_worker.main in ``nproc`` processes forked from this one (gloo on 127.0.0.1)."""
    import torch.multiprocessing as mp

    from tests.invariants.ddp_worker import forked

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [str(model_dir), str(run_dir), json.dumps(options), *extra]
    mp.start_processes(forked, args=(nproc, port, argv), nprocs=nproc, start_method="fork")


def train_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["event"] == "train"]


def single_process(model_dir, run_dir, options: dict, **kw):
    options = dict(options)
    features = tiny_features(options.pop("n_features"))
    model = tiny_model(model_dir)
    run(model, features, run_dir, fp32_cfg(**options), **kw)
    return model


@pytest.fixture(scope="module")
def two_process_run(tiny_llama_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    fork_workers(2, tiny_llama_dir, run_dir, CFG)
    return run_dir


# Weights after AdamW steps from runs whose gradients differ only by float32 reordering (one
# process sums the window, two sum halves and all-reduce): every element agrees to TOL except where
# a gradient sits within a few ulps of Adam's eps (1e-8), whose update lr * g / (|g| + eps) can then
# change by up to lr per step on one CPU kind and not another (an AMD EPYC with AVX-512 showed 1
# such element in 23,296). So at most OUTLIERS of a tensor's elements may miss TOL, and none may
# differ by more than lr (1e-2) per step.
OUTLIERS = 1e-3


def assert_close_params(expected: dict, got: dict, lr: float = 1e-2, steps: int = CFG["max_steps"]) -> None:
    assert expected.keys() == got.keys()
    for name in expected:
        a, b = expected[name], got[name]
        assert a.shape == b.shape, name
        off = ~torch.isclose(b, a, **TOL)
        assert int(off.sum()) <= max(1, OUTLIERS * a.numel()), f"{name}: {int(off.sum())} of {a.numel()} elements differ"
        assert float((a - b).abs().max()) <= lr * steps, name


@pytest.fixture(scope="module")
def one_process_run(tiny_llama_dir, tmp_path_factory):
    """(final parameters, run folder) of the single-process reference run."""
    run_dir = tmp_path_factory.mktemp("one") / "run"
    return params_of(single_process(tiny_llama_dir, run_dir, CFG)), run_dir


def test_two_processes_equal_one_with_the_same_global_batch(tiny_llama_dir, one_process_run, two_process_run):
    one, one_dir = one_process_run
    expected_losses = train_losses(one_dir)
    got_losses = train_losses(two_process_run)
    assert len(got_losses) == len(expected_losses) == 4  # rank 0 alone writes metrics.jsonl
    torch.testing.assert_close(torch.tensor(got_losses), torch.tensor(expected_losses), **TOL)
    assert_close_params(one, load_file(str(two_process_run / "final.safetensors")))
    # the weights really moved: a broken all-reduce could not pass by leaving them alone
    start = params_of(tiny_model(tiny_llama_dir))
    assert any(not torch.allclose(start[n], p) for n, p in one.items())


def test_checkpoint_of_two_processes_resumes_in_one(tiny_llama_dir, tmp_path, two_process_run):
    run_dir = tmp_path / "crashed"
    fork_workers(2, tiny_llama_dir, run_dir, CFG, "--stop-after", "3")
    assert not (run_dir / "final.safetensors").exists()  # the run really stopped at step 3
    state = json.loads((run_dir / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 2  # save_every=2: the crash at step 3 left step 2 behind
    resumed = single_process(tiny_llama_dir, run_dir, CFG, resume=True)
    assert_close_params(load_file(str(two_process_run / "final.safetensors")), params_of(resumed))
    losses = train_losses(run_dir)
    assert len(losses) == 4
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(train_losses(two_process_run)), **TOL)


def test_two_processes_train_from_memory_mapped_shards_like_one_from_a_list(tiny_llama_dir, tmp_path,
                                                                            one_process_run):
    from lmforge.data.shards import write_token_shards

    one, _ = one_process_run
    folder = write_token_shards(iter(tiny_features(CFG["n_features"])), tmp_path / "tokens", shard_tokens=64)
    fork_workers(2, tiny_llama_dir, tmp_path / "run", {**CFG, "shards": str(folder)})
    assert_close_params(one, load_file(str(tmp_path / "run" / "final.safetensors")))


def test_fsdp_equals_one_process_and_resumes_from_its_own_checkpoint(tiny_llama_dir, tmp_path, one_process_run):
    """FSDP (fully_shard, gloo): sharded checkpoints are gathered whole and re-sharded on resume;
    evaluation inside the loop runs on every rank (a sharded forward needs them all)."""
    one, one_dir = one_process_run
    options = {**CFG, "distributed": {"strategy": "fsdp"}, "with_eval": True, "eval_every": 2}
    run_dir = tmp_path / "fsdp"
    fork_workers(2, tiny_llama_dir, run_dir, options, "--stop-after", "3")
    assert not (run_dir / "final.safetensors").exists()
    fork_workers(2, tiny_llama_dir, run_dir, options, "--resume")
    assert_close_params(one, load_file(str(run_dir / "final.safetensors")))
    torch.testing.assert_close(torch.tensor(train_losses(run_dir)), torch.tensor(train_losses(one_dir)), **TOL)
    evals = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [2, 4] and all(0 < e["eval_loss"] < 20 for e in evals)


@pytest.mark.slow
def test_torchrun_processes_equal_forked_processes(tiny_llama_dir, tmp_path, two_process_run):
    """The real launcher: rank / world size / rendezvous come from torchrun's environment."""
    done = launch_workers(2, tiny_llama_dir, tmp_path / "torchrun", CFG)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_close_params(load_file(str(two_process_run / "final.safetensors")),
                        load_file(str(tmp_path / "torchrun" / "final.safetensors")))
