"""Faults: SIGKILL at seeded random points of training, checkpoint writing, export and data prepare, and a
full disk (a file-size limit) while writing a checkpoint, an export and prepared data.

After a kill, what is published is whole: ``checkpoints/last`` (or the previous one, ``.last.old``)
holds every file a resume needs, ``export/`` and the prepared folder are absent or complete. A
``--resume`` / a rerun then gives exactly the outputs of an uninterrupted run (weights bit-identical,
prepared files byte-identical) and removes what the killed process left behind. A full disk exits 3
with a message saying so, keeps the previous checkpoint / export / prepared folder byte-identical, and
leaves no temporary behind.

The victim is tests/e2e/fault_victim.py: the real CLI in a subprocess that SIGKILLs itself at the
chosen point (or runs under RLIMIT_FSIZE). Tiny Llama, 6 steps, one thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.train.checkpoint import missing_files

REPO = Path(__file__).resolve().parents[2]
VICTIM = Path(__file__).with_name("fault_victim.py")
RNG = random.Random(20251205)  # the seeded kill points
KILL_AT = {"step": RNG.randint(2, 5), "checkpoint-write": RNG.randint(2, 5), "checkpoint-swap": RNG.randint(1, 4)}
ROWS = [{"question": f"what is {w} number {i}?", "answer": f"{w} {i} is a thing."}
        for i in range(40) for w in ("a bond", "a stock")]
CONFIG = """
run: {output_dir: run, seed: 3}
model: {name: MODEL}
data: {format: instruction, train: qa.jsonl, columns: {instruction: question, output: answer}, split: {validation: 0.1, test: 0.1}, max_length: 32}
method: {name: lora, r: 4, dropout: 0.1}
train: {max_steps: 6, batch_size: 2, lr: 0.01, save_every: 1, eval_every: 3, log_every: 1, tensorboard: false}
runtime: {precision: fp32}
eval: {before: false, generations: 0}
export: {merged: true}
"""


def _project(root: Path, model_dir) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (root / "run.yaml").write_text(CONFIG.replace("MODEL", str(model_dir)))
    return root


def _victim(project: Path, spec: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    return subprocess.run([sys.executable, str(VICTIM), json.dumps(spec), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def _lmforge(project: Path, *args: str) -> tuple[int, str]:
    """The CLI in this process (faster than a fresh interpreter); returns (exit status, stderr)."""
    from lmforge.cli.main import main

    cwd, err = Path.cwd(), io.StringIO()
    os.chdir(project)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(args))
    finally:
        os.chdir(cwd)
    return code, err.getvalue()


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_tensors(a: Path, b: Path) -> None:
    x, y = _tensors(a), _tensors(b)
    assert x.keys() == y.keys()
    assert all(torch.equal(x[k], y[k]) for k in x), f"{a} and {b} differ"


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tiny_llama_dir, tmp_path_factory) -> Path:
    """An uninterrupted run (train, export) and an uninterrupted prepare: the outputs every fault must reproduce."""
    project = _project(tmp_path_factory.mktemp("reference"), tiny_llama_dir)
    code, err = _lmforge(project, "train", "run.yaml")
    assert code == 0, err[-3000:]
    code, err = _lmforge(project, "data", "prepare", "run.yaml", "--out", "prepared")
    assert code == 0, err[-3000:]
    return project


def _assert_published_whole(run: Path) -> None:
    """What a reader can see after a kill: complete checkpoints, no half export."""
    checkpoints = run / "checkpoints"
    for name in ("last", ".last.old"):
        if (checkpoints / name).exists():
            assert not missing_files(checkpoints / name), f"{name} is incomplete"
    assert (checkpoints / "last").exists() or (checkpoints / ".last.old").exists()
    export = run / "export"
    assert not export.exists() or {"README.md", ".lmforge"} <= {p.name for p in export.iterdir()}


@pytest.mark.parametrize("where", sorted(KILL_AT))
def test_sigkill_while_training_resumes_to_the_same_weights(where, tiny_llama_dir, tmp_path, reference):
    project = _project(tmp_path / "p", tiny_llama_dir)
    done = _victim(project, {"kill": where, "at": KILL_AT[where]}, "train", "run.yaml")
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    run = project / "run"
    _assert_published_whole(run)
    assert not (run / "export").exists()
    if where == "checkpoint-write":  # the killed write left its temporary folder
        assert list((run / "checkpoints").glob(".last.*.tmp"))

    code, err = _lmforge(project, "train", "run.yaml", "--resume")
    assert code == 0, err[-3000:]
    assert not list((run / "checkpoints").glob(".*.tmp")) and not (run / "checkpoints" / ".last.old").exists()
    _assert_same_tensors(reference / "run/checkpoints/last/model.safetensors", run / "checkpoints/last/model.safetensors")
    _assert_same_tensors(reference / "run/export/adapter/adapter_model.safetensors",
                         run / "export/adapter/adapter_model.safetensors")


def test_sigkill_during_export_publishes_nothing_and_a_rerun_exports_the_same(tiny_llama_dir, tmp_path, reference):
    project = _project(tmp_path / "p", tiny_llama_dir)
    done = _victim(project, {"kill": "export", "at": 1}, "train", "run.yaml")
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    run = project / "run"
    assert not (run / "export").exists()  # the staged export (adapter + merged, no card) was never published
    assert list(run.glob(".export.*.tmp"))
    _assert_published_whole(run)

    code, err = _lmforge(project, "export", "run")
    assert code == 0, err[-3000:]
    assert not list(run.glob(".export.*.tmp"))
    for rel in ("adapter/adapter_model.safetensors", "merged/model.safetensors"):
        _assert_same_tensors(reference / "run/export" / rel, run / "export" / rel)


@pytest.mark.parametrize("where", ["prepare-stage", "prepare-swap"])
def test_sigkill_during_prepare_leaves_the_old_or_new_folder_whole(where, tiny_llama_dir, tmp_path, reference):
    project = _project(tmp_path / "p", tiny_llama_dir)
    out = project / "prepared"
    if where == "prepare-swap":  # a previous output exists: the kill falls between moving it aside and the new rename
        shutil.copytree(reference / "prepared", out)
    done = _victim(project, {"kill": where, "at": 1}, "data", "prepare", "run.yaml", "--out", "prepared")
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    if where == "prepare-stage":
        assert not out.exists()  # nothing published
    else:
        assert not out.exists() and _files(project / ".prepared.old") == _files(reference / "prepared")
    assert list(project.glob(".prepared.*.prepare"))  # the killed run's work folder

    code, err = _lmforge(project, "data", "prepare", "run.yaml", "--out", "prepared")
    assert code == 0, err[-3000:]
    assert _files(out) == _files(reference / "prepared")  # byte-identical to an uninterrupted prepare
    assert sorted(p.name for p in project.iterdir()) == ["prepared", "qa.jsonl", "run.yaml"]  # leftovers removed


def _assert_disk_full(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "refused to write more" in done.stderr or "no space left" in done.stderr, done.stderr[-2000:]
    for needle in needles:
        assert needle in done.stderr, done.stderr[-2000:]


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tiny_llama_dir, tmp_path, reference):
    project = _project(tmp_path / "p", tiny_llama_dir)
    assert _victim(project, {"kill": "step", "at": 3}, "train", "run.yaml").returncode == -signal.SIGKILL
    last = project / "run" / "checkpoints" / "last"
    before = _files(last)
    assert json.loads((last / "state.json").read_text())["step"] == 2
    # optimizer.safetensors is ~39 kB, everything the run writes before it stays under 30 kB
    done = _victim(project, {"fsize": 30_000}, "train", "run.yaml", "--resume")
    _assert_disk_full(done, "checkpoints/last")
    assert _files(last) == before  # the previous checkpoint, untouched
    assert not list(last.parent.glob(".*.tmp"))
    code, err = _lmforge(project, "train", "run.yaml", "--resume")
    assert code == 0, err[-3000:]
    _assert_same_tensors(reference / "run/checkpoints/last/model.safetensors", last / "model.safetensors")


def test_full_disk_while_exporting_keeps_the_previous_export(tmp_path, reference):
    project = tmp_path / "p"
    shutil.copytree(reference, project)
    before = _files(project / "run" / "export")
    done = _victim(project, {"fsize": 60_000}, "export", "run")  # the merged model is ~95 kB
    _assert_disk_full(done, "export")
    assert _files(project / "run" / "export") == before
    assert not list((project / "run").glob(".export.*"))


def test_full_disk_while_preparing_keeps_the_previous_output(tiny_llama_dir, tmp_path, reference):
    project = _project(tmp_path / "p", tiny_llama_dir)
    shutil.copytree(reference / "prepared", project / "prepared")
    done = _victim(project, {"fsize": 2_000}, "data", "prepare", "run.yaml", "--out", "prepared")  # train.jsonl: ~5 kB
    _assert_disk_full(done, "prepared")
    assert _files(project / "prepared") == _files(reference / "prepared")
    assert sorted(p.name for p in project.iterdir()) == ["prepared", "qa.jsonl", "run.yaml"]  # no work folder left
