"""Calibrate lmforge.train.estimate against measured peak RSS of a few real training steps.

Usage (from the repo root):

    .venv/bin/python benchmarks/calibrate_estimate.py --model DIR [--layers 4] [--only NAME]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--only", action="append", choices=sorted(CONFIGS))
    args = parser.parse_args()
    for name in args.only or list(CONFIGS):
        print(json.dumps(run_one(args.model, args.layers, name)), flush=True)


if __name__ == "__main__":
    main()
