"""Side-by-side training throughput: HF Trainer + PEFT (defaults, and its best: bf16 + padding-free) vs lmforge.

One invocation runs interleaved rounds of every configuration on the same model, data, LoRA config,
effective batch and step count. Each configuration runs in its own subprocess so peak RSS is its own.
Reports real (non-pad) tokens/s, peak RSS, achieved GFLOP/s, the fraction of this machine's measured
matmul peak, medians over rounds, per-round ratios, and checks the loss curves agree.

    .venv/bin/python benchmarks/train_throughput.py --model llama110m --method lora --rounds 3 --steps 12
    .venv/bin/python benchmarks/train_throughput.py --model smollm2 --method lora --rounds 3 --steps 8

Run with nothing else busy on the machine (2 threads; see shared pitfalls on oversubscription).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = ["hf_default", "hf_best", "lmforge"]
LABELS = {
    "hf_default": "HF Trainer + PEFT, defaults (fp32, padded)",
    "hf_best": "HF Trainer + PEFT, bf16 + padding-free",
    "lmforge": "lmforge (auto precision, packed, chunked loss)",
}


# ----------------------------------------------------------------------------- shared workload
def build_model(kind: str, method: str, seed: int):
    """The benchmark model: a ~110M Llama (hidden 768, 12 layers, vocab 32000) or SmolLM2-135M (real weights)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "llama110m":
        cfg = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                          num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024,
                          tie_word_embeddings=False)
        model = LlamaForCausalLM(cfg)
    else:
        from lmforge.config import ModelConfig
        from lmforge.model.source import resolve_model

        path = resolve_model(ModelConfig(name="smollm2-135m-instruct")).path
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    return model


def build_examples(vocab: int, n: int, seed: int, lo: int = 64, hi: int = 512) -> list[dict]:
    """Variable-length sequences (uniform 64..512 tokens), every token trained, deterministic by seed."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(lo, hi)
        ids = [rng.randrange(10, vocab) for _ in range(length)]
        out.append({"input_ids": ids, "labels": list(ids)})
    return out


def linear_params(model) -> int:
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


# ----------------------------------------------------------------------------- workers
def run_hf(args, best: bool) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer, TrainerCallback, TrainingArguments

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.method, args.seed)
    vocab = model.config.vocab_size
    examples = build_examples(vocab, args.steps * args.batch, args.seed)

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.losses = [], []

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)

        def on_log(self, _args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    if best:
        collator = DataCollatorWithFlattening()
    else:
        from transformers import PreTrainedTokenizerFast
        from tokenizers import Tokenizer, models

        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0}, unk_token="<pad>")),
                                      pad_token="<pad>")
        collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    timer = Timer()
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=1e-4, lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
        bf16=best and _bf16_ok(), use_cpu=True, seed=args.seed, dataloader_num_workers=0, max_grad_norm=1.0,
        warmup_steps=0, weight_decay=0.0, disable_tqdm=True, remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=_ListDataset(examples), data_collator=collator,
                      callbacks=[timer])
    trainer.train()
    return _summary(args, model, examples, timer.times, timer.losses)


def run_lmforge(args) -> dict:
    """lmforge's own loop on the same model and examples: bf16 autocast where the CPU has it,
    padding-free packing of each micro-batch into one row, chunked loss on labelled positions."""
    import torch

    from lmforge.config.schema import TrainConfig
    from lmforge.objectives import build_objective, get_objective_spec
    from lmforge.train import train
    from lmforge.train.callbacks import Callback

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.method, args.seed)
    examples = build_examples(model.config.vocab_size, args.steps * args.batch, args.seed)
    # One packed row per example; a micro-batch of rows is concatenated into a single (1, total)
    # row with restarting position ids (data/packing.py) -- the same math as HF's flattening.
    rows = [{"input_ids": e["input_ids"], "labels": [-100] + e["labels"][1:], "lengths": [len(e["input_ids"])]}
            for e in examples]
    objective = build_objective("causal_lm", get_objective_spec("causal_lm").params())
    times, losses = [], []

    class Timer(Callback):
        def on_step(self, state, logs):
            times.append(logs["seconds"])
            losses.append(logs["loss_sum"] / max(logs["units"], 1))

    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch, lr=1e-4, warmup_ratio=0.0, scheduler="constant",
                      precision="auto", log_every=1, tensorboard=False, eval_every=10_000, save_every=10_000)
    train(model, objective, rows, train_cfg=cfg, run_dir=Path(tempfile.mkdtemp()),
          collate=lambda feats: objective.collate(feats, None), evaluate_fn=None, seed=args.seed,
          best_metric="loss", metric_mode="min", callbacks=[Timer()])
    return _summary(args, model, examples, times, losses)


def _bf16_ok() -> bool:
    """HF's best configuration uses bf16 autocast where the CPU runs it natively (AMX / AVX512-BF16)."""
    from lmforge.train.runtime import cpu_supports_bf16

    return cpu_supports_bf16()


class _ListDataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return dict(self.rows[i])


def _summary(args, model, examples, times, losses) -> dict:
    # The first step pays one-off costs (allocations, autocast caches): excluded from throughput.
    measured = times[1:] if len(times) > 1 else times
    tokens_per_step = [sum(len(e["input_ids"]) for e in examples[i * args.batch:(i + 1) * args.batch])
                       for i in range(len(times))]
    tokens = sum(tokens_per_step[1:] if len(times) > 1 else tokens_per_step)
    seconds = sum(measured)
    flops_per_token = (4 if args.method == "lora" else 6) * linear_params(model)
    return {
        "tokens_per_s": tokens / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "gflops": flops_per_token * tokens / seconds / 1e9,
        "losses": losses,
        "step_s": statistics.median(measured),
    }


# ----------------------------------------------------------------------------- driver
def matmul_peak(threads: int) -> dict:
    import torch

    from lmforge.train.runtime import cpu_supports_bf16

    torch.set_num_threads(threads)
    out = {"bf16": 0.0}  # a CPU without native bf16 emulates it (minutes per matmul here): reported as 0
    dtypes = [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if cpu_supports_bf16() else [])
    for name, dtype in dtypes:
        a = torch.randn(2048, 2048, dtype=dtype)
        b = torch.randn(2048, 2048, dtype=dtype)
        for _ in range(3):
            a @ b
        t0 = time.perf_counter()
        reps = 10
        for _ in range(reps):
            a @ b
        out[name] = 2 * 2048**3 * reps / (time.perf_counter() - t0) / 1e9
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["llama110m", "smollm2"], default="llama110m")
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--json", default=None, help="write all results to this JSON file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = run_lmforge(args) if args.worker == "lmforge" else run_hf(args, best=args.worker == "hf_best")
        print("RESULT " + json.dumps(result))
        return 0

    configs = args.configs.split(",")
    peak = matmul_peak(args.threads)
    print(f"matmul peak on this machine: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    rounds: list[dict] = []
    for r in range(args.rounds):
        row = {}
        for name in configs:  # interleaved: every round runs every configuration once
            cmd = [sys.executable, __file__, "--worker", name] + [
                f"--{k}={v}" for k, v in (("model", args.model), ("method", args.method), ("steps", args.steps),
                                          ("batch", args.batch), ("threads", args.threads), ("seed", args.seed))]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{name} failed")
            row[name] = json.loads(line[7:])
            print(f"round {r + 1} {name:<10} {row[name]['tokens_per_s']:8.0f} tok/s  "
                  f"{row[name]['peak_rss_gb']:.2f} GB  {row[name]['gflops']:.0f} GFLOP/s", flush=True)
        rounds.append(row)
    print(report(args, configs, rounds, peak))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "peak": peak, "rounds": rounds}, indent=1))
    return 0


def report(args, configs, rounds, peak) -> str:
    med = {n: {k: statistics.median(r[n][k] for r in rounds) for k in ("tokens_per_s", "peak_rss_gb", "gflops")}
           for n in configs}
    lines = [f"\n{args.model}, {args.method}, batch {args.batch}, {args.steps} steps, {args.rounds} rounds, "
             f"{args.threads} threads (medians)", "",
             "| configuration | real tokens/s | peak RSS (GB) | GFLOP/s | % of matmul peak |",
             "| --- | --- | --- | --- | --- |"]
    for n in configs:
        m = med[n]
        lines.append(f"| {LABELS[n]} | {m['tokens_per_s']:.0f} | {m['peak_rss_gb']:.2f} | {m['gflops']:.0f} | "
                     f"{100 * m['gflops'] / max(peak['fp32'], peak['bf16']):.0f}% |")
    if "lmforge" in configs and "hf_best" in configs:
        ratios = [r["lmforge"]["tokens_per_s"] / r["hf_best"]["tokens_per_s"] for r in rounds]
        lines.append(f"\nlmforge / HF best tokens/s per round: {', '.join(f'{x:.2f}x' for x in ratios)} "
                     f"(median {statistics.median(ratios):.2f}x)")
    base = rounds[0][configs[0]]["losses"]
    for n in configs[1:]:
        other = rounds[0][n]["losses"]
        diff = max(abs(a - b) for a, b in zip(base, other)) if other else float("nan")
        lines.append(f"loss curve {n} vs {configs[0]}: max |diff| {diff:.4f} over {min(len(base), len(other))} steps")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
