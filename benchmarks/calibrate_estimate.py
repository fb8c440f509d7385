"""Calibrate lmforge.train.estimate against measured peak RSS of a few real training steps.

Usage (from the repo root):

    .venv/bin/python benchmarks/calibrate_estimate.py --model DIR [--layers 4] [--only NAME]
    .venv/bin/python benchmarks/calibrate_estimate.py --runs [NAME ...] [--steps 5] [--threads 1]

``--runs``: real lmforge runs (SmolLM2 LoRA = the quickstart, SmolLM2 full, MiniLM classifier
LoRA), each trained for ``--steps`` optimizer steps in a fresh process (peak RSS, median s/step
after the first) next to ``lmforge estimate``'s prediction for the same config (meta device, no
weights loaded). Otherwise:

``DIR`` is an HF folder of a Llama-architecture model (e.g. the safetensors cache of
smollm2-135m-instruct that ``lmforge.model`` writes), cut to ``--layers`` layers. Each config runs
in a fresh subprocess (3 optimizer steps on random tokens, AdamW) and reports its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) next to the estimate. Prints one JSON line per
config and a final table; record it in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CONFIGS = {
    # name: (method, precision, batch, seq_len, chunked loss, activation checkpointing)
    # bf16 configs need a CPU with AMX/AVX512-BF16 (elsewhere bf16 matmuls are emulated, very slow)
    "full-fp32": ("full", "fp32", 4, 128, False, False),
    "full-fp32-chunked": ("full", "fp32", 4, 128, True, False),
    "full-fp32-ckpt": ("full", "fp32", 4, 128, False, True),
    "lora-fp32": ("lora", "fp32", 4, 256, False, False),
    "lora-bf16": ("lora", "bf16", 4, 256, False, False),
    "lora-fp32-chunked": ("lora", "fp32", 4, 256, True, False),
    "lora-bf16-chunked": ("lora", "bf16", 8, 256, True, False),
}
CHUNK = 256  # chunk size of the chunked configs (smaller than their token count, so it matters)

CHILD = r"""
import json, resource, sys, time
import torch
CHUNK = %d
torch.set_num_threads(1)
import transformers, peft  # framework overhead counted in the baseline
from transformers import AutoConfig, AutoModelForCausalLM
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model_dir, layers, method, precision, batch, seq, chunked, ckpt = json.loads(sys.argv[1])
cfg = AutoConfig.from_pretrained(model_dir, num_hidden_layers=layers)
frozen_dtype = torch.bfloat16 if (method == "lora" and precision == "bf16") else torch.float32
model = AutoModelForCausalLM.from_pretrained(model_dir, config=cfg, dtype=frozen_dtype)
if method == "lora":
    from peft import LoraConfig, get_peft_model
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
if ckpt:
    from lmforge.train.checkpointing import enable_activation_checkpointing
    enable_activation_checkpointing(model, "all")
from lmforge.objectives.causal_lm.chunked import chunked_causal_lm_loss, full_causal_lm_loss
model.train()
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
g = torch.Generator().manual_seed(0)
times = []
for step in range(2):
    ids = torch.randint(3, cfg.vocab_size, (batch, seq), generator=g)
    batch_ = {"input_ids": ids, "labels": ids}
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        if chunked:
            s, c = chunked_causal_lm_loss(model, batch_, chunk_size=CHUNK)
        else:
            s, c = full_causal_lm_loss(model(input_ids=ids, use_cache=False).logits, ids)
    (s / c).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_bytes": base_kb * 1024, "peak_bytes": peak_kb * 1024,
                  "trainable": trainable, "step_s": times[-1]}))
"""


def run_one(model_dir: str, layers: int, name: str) -> dict:
    """Measure one config in a fresh process and compare with the estimate."""
    from transformers import AutoConfig

    from lmforge.train.estimate import estimate

    method, precision, batch, seq, chunked, ckpt = CONFIGS[name]
    args = json.dumps([model_dir, layers, method, precision, batch, seq, chunked, ckpt])
    out = subprocess.run([sys.executable, "-c", CHILD % CHUNK, args], capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    cfg = AutoConfig.from_pretrained(model_dir, num_hidden_layers=layers)
    est = estimate(
        cfg,
        trainable_params=None if method == "full" else measured["trainable"],
        precision=precision,
        batch_size=batch,
        seq_lengths=[seq] * batch,
        activation_checkpointing=ckpt,
        chunked_loss=chunked,
        chunk_size=CHUNK,
        frozen_bits=16 if (method == "lora" and precision == "bf16") else 32,
    )
    return {
        "config": name,
        "measured_mib": round(measured["peak_bytes"] / 2**20),
        "estimated_mib": round(est.peak_bytes / 2**20),
        "ratio": round(est.peak_bytes / measured["peak_bytes"], 3),
        "baseline_mib": round(measured["base_bytes"] / 2**20),
        "step_s": round(measured["step_s"], 3),
        "estimated_step_s": round(est.time_per_step_s, 3),
        "breakdown_mib": {k: round(v / 2**20) for k, v in est.breakdown.items()},
    }


# Real runs: (config, overrides). Each trains --steps optimizer steps through lmforge's own session
# and loop (no evaluation, no export) in a fresh process; `lmforge estimate`'s prediction for the
# same config (model on the meta device, no weights) is computed in this process.
RUNS = {  # name: (config, method section replacing the config's, or None to keep it)
    "smollm2-lora": ("src/lmforge/quickstart.yaml", None),
    "smollm2-full": ("src/lmforge/quickstart.yaml", {"name": "full"}),
    "minilm-classifier-lora": ("examples/sentiment-minilm.yaml", {"name": "lora", "r": 16, "alpha": 32}),
}

RUN_CHILD = r"""
import json, resource, sys, tempfile, time
config_path, overrides, steps, threads = json.loads(sys.argv[1])
from lmforge.config import load_config
from lmforge.pipeline import open_session
from lmforge.train import train
from lmforge.train.callbacks import Callback
config = load_config(config_path, overrides + [f"train.max_steps={steps}", f"runtime.threads={threads}",
                                               "train.eval_every=100000", "train.log_every=1"])
s = open_session(config, say=lambda _m: None)
seconds = []
class Timer(Callback):
    def on_step(self, state, logs):
        seconds.append(logs["seconds"])
with tempfile.TemporaryDirectory() as tmp:
    train(s.model, s.objective, s.train_features, train_cfg=config.train, runtime_cfg=config.runtime, run_dir=tmp, collate=s.collate,
          evaluate_fn=None, seed=config.run.seed, best_metric=s.plan.best_metric, metric_mode=s.plan.metric_mode,
          callbacks=[Timer()])
print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "step_s": seconds}))
"""


def run_real(name: str, steps: int, threads: int) -> dict:
    """One real run (fresh process) against ``lmforge estimate``'s prediction for the same config."""
    import statistics

    from lmforge.config import load_config
    from lmforge.pipeline.plan import plan_run
    from lmforge.train.estimate_run import estimate_run

    import tempfile

    import yaml

    source, method = RUNS[name]
    raw = yaml.safe_load(Path(source).read_text())
    if method is not None:
        raw["method"] = method
    path = Path(tempfile.mkdtemp(prefix="calibrate-")) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    overrides = [f"run.output_dir={path.parent / 'run'}"]
    out = subprocess.run([sys.executable, "-c", RUN_CHILD, json.dumps([str(path), overrides, steps, threads])],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    config = load_config(str(path), overrides + [f"runtime.threads={threads}"])
    est = estimate_run(config, plan_run(config, str(path))).estimate
    step_s = statistics.median(measured["step_s"][1:])  # the first step warms up allocators and kernels
    return {
        "run": name, "config": source, "method": method,
        "measured_mib": round(measured["peak_bytes"] / 2**20), "estimated_mib": round(est.peak_bytes / 2**20),
        "memory_ratio": round(est.peak_bytes / measured["peak_bytes"], 3),
        "step_s": round(step_s, 3), "estimated_step_s": round(est.time_per_step_s, 3),
        "time_ratio": round(est.time_per_step_s / step_s, 3), "steps_s": [round(t, 3) for t in measured["step_s"]],
        "probe_gflops": round(est.inputs.peak_gflops or 0, 1),
        # the utilization that would have predicted this run exactly (estimate time scales as 1 / utilization)
        "fitted_utilization": round(est.time_per_step_s * est.inputs.utilization / step_s, 3),
        "breakdown_mib": {k: round(v / 2**20) for k, v in est.breakdown.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="synthetic configs: an HF Llama folder")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--only", action="append", choices=sorted(CONFIGS))
    parser.add_argument("--runs", nargs="*", choices=sorted(RUNS), help="real runs instead (all when empty)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.runs is not None:
        for name in args.runs or list(RUNS):
            print(json.dumps(run_real(name, args.steps, args.threads)), flush=True)
        return
    if not args.model:
        parser.error("--model is required for the synthetic configs")
    for name in args.only or list(CONFIGS):
        print(json.dumps(run_one(args.model, args.layers, name)), flush=True)


if __name__ == "__main__":
    main()
