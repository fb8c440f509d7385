"""Training-loop invariants on the tiny Llama: exact resume (after an exception and after a real
SIGKILL), bf16 autocast learns like fp32, early stopping, best checkpoint = best metric.

Run as a script (``python tests/invariants/test_loop.py MODEL_DIR RUN_DIR``) it trains the
tiny model slowly with ``save_every=1`` so the SIGKILL test can kill it mid-run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from lmforge.config.schema import EarlyStopping, RuntimeConfig, TrainConfig
from lmforge.objectives import build_objective
from lmforge.objectives.causal_lm.config import CausalLMParams
from lmforge.train import Callback, train
from lmforge.train.checkpoint import checkpoint_dir, find_resume_dir

REPO = Path(__file__).resolve().parents[2]


def tiny_model(model_dir):
    """The tiny Llama in fp32, every parameter trainable."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def tiny_features(n: int = 16, seed: int = 0, vocab: int = 100) -> list[dict]:
    """Variable-length examples (4-19 tokens) whose first 1-3 labels are -100 (a "prompt")."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(4, 19)
        ids = [rng.randrange(4, vocab) for _ in range(length)]
        prompt = rng.randint(1, 3)
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def pad_collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; padding is masked and not trained."""
    width = max(len(f["input_ids"]) for f in features)
    ids, mask, labels = [], [], []
    for f in features:
        pad = width - len(f["input_ids"])
        ids.append(f["input_ids"] + [pad_id] * pad)
        mask.append([1] * len(f["input_ids"]) + [0] * pad)
        labels.append(f["labels"] + [-100] * pad)
    return {k: torch.tensor(v) for k, v in (("input_ids", ids), ("attention_mask", mask), ("labels", labels))}


def fp32_cfg(**overrides) -> TrainConfig:
    base = dict(tensorboard=False, warmup_ratio=0.0, log_every=1, lr=1e-2)
    return TrainConfig(**{**base, **overrides})


def causal_lm():
    return build_objective("causal_lm", CausalLMParams())


def run(model, features, run_dir, cfg, **kw):
    kw.setdefault("evaluate_fn", None)
    kw.setdefault("runtime_cfg", RuntimeConfig(device="cpu", precision="fp32"))
    return train(model, causal_lm(), features, train_cfg=cfg, run_dir=run_dir, collate=pad_collate,
                 seed=kw.pop("seed", 7), best_metric=kw.pop("best_metric", "eval_loss"),
                 metric_mode=kw.pop("metric_mode", "min"), **kw)


def params_of(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


class Interrupt(Exception):
    pass


class StopAfter(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step(self, state, logs):
        if state.step == self.step:
            raise Interrupt


class Slow(Callback):
    def on_step(self, state, logs):
        time.sleep(0.4)


RESUME_CFG = dict(max_steps=6, batch_size=4, grad_accum=2, save_every=2)


def test_resume_after_exception_equals_uninterrupted(tiny_llama_dir, tmp_path):
    features = tiny_features(20)
    whole = tiny_model(tiny_llama_dir)
    result = run(whole, features, tmp_path / "whole", fp32_cfg(**RESUME_CFG))
    assert result.steps == 6

    broken = tiny_model(tiny_llama_dir)
    try:
        run(broken, features, tmp_path / "broken", fp32_cfg(**RESUME_CFG), callbacks=[StopAfter(3)])
    except Interrupt:
        pass
    state = json.loads((checkpoint_dir(tmp_path / "broken", "last") / "state.json").read_text())
    assert state["step"] == 2
    resumed = tiny_model(tiny_llama_dir)  # fresh base weights: everything must come from the checkpoint
    result = run(resumed, features, tmp_path / "broken", fp32_cfg(**RESUME_CFG), resume=True)
    assert result.steps == 6
    assert_same_params(params_of(whole), params_of(resumed))
    steps = [json.loads(line)["step"] for line in (tmp_path / "broken" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the interrupted run's step 3 is not duplicated


def test_lora_dropout_resume_equals_uninterrupted(tiny_llama_dir, tmp_path):
    """LoRA's dropout masks come from keys drawn from torch's generator at each layer call: a resumed run
    restores the generator with the checkpoint and draws the masks the uninterrupted run drew."""
    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo

    def lora_model(dropout=0.3):
        torch.manual_seed(0)
        params = METHODS["lora"].params.model_validate({"r": 4, "dropout": dropout})
        return build_method("lora", params).apply(tiny_model(tiny_llama_dir), TaskInfo("causal_lm"))

    features = tiny_features(20)
    whole = lora_model()
    run(whole, features, tmp_path / "whole", fp32_cfg(**RESUME_CFG))
    broken = lora_model()
    try:
        run(broken, features, tmp_path / "broken", fp32_cfg(**RESUME_CFG), callbacks=[StopAfter(3)])
    except Interrupt:
        pass
    resumed = lora_model()
    torch.manual_seed(123)  # a different generator state before resuming: the checkpoint must restore it
    run(resumed, features, tmp_path / "broken", fp32_cfg(**RESUME_CFG), resume=True)
    lora = {n: p for n, p in params_of(whole).items() if "lora_" in n}
    assert lora and any(not torch.equal(p, params_of(lora_model())[n]) for n, p in lora.items())  # it trained
    assert_same_params(lora, {n: p for n, p in params_of(resumed).items() if "lora_" in n})
    undropped = lora_model(dropout=0.0)
    run(undropped, features, tmp_path / "no-dropout", fp32_cfg(**RESUME_CFG))
    assert any(not torch.equal(p, params_of(undropped)[n]) for n, p in lora.items())  # dropout was at work


def test_resume_after_sigkill_equals_uninterrupted(tiny_llama_dir, tmp_path):
    run_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}:{REPO / 'src'}"}
    proc = subprocess.Popen([sys.executable, __file__, str(tiny_llama_dir), str(run_dir)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = checkpoint_dir(run_dir, "last") / "state.json"
    deadline = time.time() + 90
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    killed_at = json.loads((find_resume_dir(run_dir) / "state.json").read_text())["step"]
    assert 1 <= killed_at < KILL_CFG["max_steps"]

    whole = tiny_model(tiny_llama_dir)
    run(whole, tiny_features(20), tmp_path / "whole", fp32_cfg(**KILL_CFG))
    resumed = tiny_model(tiny_llama_dir)
    result = run(resumed, tiny_features(20), run_dir, fp32_cfg(**KILL_CFG), resume=True)
    assert result.steps == KILL_CFG["max_steps"]
    assert_same_params(params_of(whole), params_of(resumed))


KILL_CFG = dict(max_steps=5, batch_size=4, grad_accum=1, save_every=1)


def test_resume_without_checkpoint_starts_fresh(tiny_llama_dir, tmp_path, capsys):
    model = tiny_model(tiny_llama_dir)
    result = run(model, tiny_features(4), tmp_path / "new", fp32_cfg(max_steps=1, batch_size=4), resume=True)
    assert result.steps == 1
    assert "starting fresh" in capsys.readouterr().out


def _final_loss(model, features) -> float:
    objective = causal_lm()
    out = objective.eval_step(model, pad_collate(features))
    return out.loss_total / out.count


def test_bf16_autocast_lowers_the_loss_like_fp32(tiny_llama_dir, tmp_path):
    features = tiny_features(4)
    losses = {}
    for precision in ("fp32", "bf16"):
        model = tiny_model(tiny_llama_dir)
        start = _final_loss(model, features)
        run(model, features, tmp_path / precision, fp32_cfg(max_steps=15, batch_size=4),
            runtime_cfg=RuntimeConfig(device="cpu", precision=precision))
        losses[precision] = (start, _final_loss(model, features))
    for precision, (start, end) in losses.items():
        assert end < 0.7 * start, (precision, start, end)
    assert abs(losses["bf16"][1] - losses["fp32"][1]) < 0.25 * losses["fp32"][0]
    assert losses["bf16"][1] != losses["fp32"][1]  # autocast really ran in bf16


class Scripted:
    """evaluate_fn returning a scripted eval_loss sequence and remembering the weights it saw."""

    def __init__(self, values):
        self.values, self.seen = list(values), []

    def __call__(self, model):
        self.seen.append(params_of(model)["model.norm.weight"])
        return {"eval_loss": self.values[len(self.seen) - 1], "accuracy": 0.5}


def test_early_stopping_stops_after_patience(tiny_llama_dir, tmp_path):
    model = tiny_model(tiny_llama_dir)
    evaluate = Scripted([3.0, 2.0, 2.5, 2.4, 1.0, 0.5])
    cfg = fp32_cfg(max_steps=6, batch_size=4, eval_every=1, early_stopping=EarlyStopping(patience=2))
    result = run(model, tiny_features(8), tmp_path / "es", cfg, evaluate_fn=evaluate)
    assert result.stopped_early
    assert result.steps == 4 and len(result.history) == 4
    assert result.best_step == 2 and result.best_metrics["eval_loss"] == 2.0


def test_best_checkpoint_holds_the_best_evaluation(tiny_llama_dir, tmp_path):
    from lmforge.train import load_trainable

    model = tiny_model(tiny_llama_dir)
    evaluate = Scripted([0.1, 0.3, 0.2, 0.4])  # mode max: best is step 4; min: step 1
    cfg = fp32_cfg(max_steps=4, batch_size=4, eval_every=1)
    result = run(model, tiny_features(8), tmp_path / "best", cfg, evaluate_fn=evaluate, metric_mode="max")
    assert result.best_step == 4 and not result.stopped_early
    evaluate = Scripted([0.1, 0.3, 0.2, 0.4])
    model = tiny_model(tiny_llama_dir)
    result = run(model, tiny_features(8), tmp_path / "min", cfg, evaluate_fn=evaluate, metric_mode="min")
    assert result.best_step == 1
    restored = load_trainable(tiny_model(tiny_llama_dir), checkpoint_dir(tmp_path / "min", "best"))
    assert torch.equal(params_of(restored)["model.norm.weight"], evaluate.seen[0])
    assert not torch.equal(evaluate.seen[0], evaluate.seen[3])


if __name__ == "__main__":  # the SIGKILL test's victim
    torch.set_num_threads(1)
    model_dir, run_dir = sys.argv[1], sys.argv[2]
    run(tiny_model(model_dir), tiny_features(20), run_dir, fp32_cfg(**KILL_CFG), callbacks=[Slow()])
