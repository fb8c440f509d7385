"""Side-by-side training throughput: HF Trainer + PEFT (defaults and its best settings) vs lmforge.

One invocation runs interleaved rounds of every configuration on the same model, data, LoRA config
(or full fine-tuning), effective batch, step count and example ORDER (HF reads lmforge's epoch order
sequentially, so both see the same micro-batches and their loss curves are comparable step by step).
Each configuration runs in its own subprocess so its peak RSS is its own. Reports real (non-pad)
tokens/s, peak RSS, achieved GFLOP/s, medians over rounds, per-round ratios against HF's fastest
configuration, the loss curves and a held-out loss after training (same 16 held-out examples).

    .venv/bin/python benchmarks/train_throughput.py --model llama110m --method lora --rounds 3 --steps 12
    .venv/bin/python benchmarks/train_throughput.py --model llama110m --method full --rounds 3 --steps 8
    .venv/bin/python benchmarks/train_throughput.py --model smollm2 --method lora --rounds 3 --steps 8

Configurations (``--configs``, default ``auto`` = every one that makes sense on this machine):
  hf_fp32_padded  HF Trainer + PEFT defaults: fp32, padded batches (DataCollatorForSeq2Seq)
  hf_bf16_padded  + bf16 autocast                          (only where the CPU has native bf16)
  hf_fp32_flat    fp32, padding-free (DataCollatorWithFlattening)
  hf_bf16_flat    bf16 + padding-free: HF's best           (only where the CPU has native bf16)
  lmforge_fp32    lmforge's loop, precision fp32
  lmforge_auto    lmforge's loop, precision auto           (only where auto resolves to bf16)
  lmforge_int8    lmforge's loop, precision int8 (opt-in; LoRA only, CPUs with VNNI / AMX-INT8); changes the
                  numerics of the frozen base, so it is reported beside the exact configurations, not as them
  lmforge_compile lmforge's loop, precision auto, runtime.compile: true (only when named). Its first steps
                  compile (and recompile once the packed length changes: dynamic shapes), so read its median
                  step time; tokens/s counts steps 2.. and includes that second compile
On a CUDA machine the same script runs the same configurations on the GPU (``--device cuda``).

``--isa avx2`` runs every configuration with torch's own kernels and oneDNN held to AVX2
(``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``) and the fp32 configurations only: a proxy, on an
AVX-512 machine, for a CPU without AVX-512 or native bf16. It is not that CPU (cores, caches and memory stay
this machine's; MKL keeps its own choice of code path, which on AMD CPUs is already its AVX2 one), so its
figures are labelled as a proxy.

Run with nothing else busy on the machine (2 threads; see shared pitfalls on oversubscription); the
load average before and after is printed with the results.
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

ALL_CONFIGS = ["hf_fp32_padded", "hf_bf16_padded", "hf_fp32_flat", "hf_bf16_flat", "lmforge_fp32", "lmforge_auto",
               "lmforge_int8"]
OPT_IN = ["lmforge_compile"]  # only when named in --configs
LABELS = {
    "hf_fp32_padded": "HF Trainer + PEFT defaults (fp32, padded)",
    "hf_bf16_padded": "HF Trainer + PEFT, bf16 padded",
    "hf_fp32_flat": "HF Trainer + PEFT, fp32 padding-free",
    "hf_bf16_flat": "HF Trainer + PEFT, bf16 padding-free",
    "lmforge_fp32": "lmforge, fp32",
    "lmforge_auto": "lmforge, auto (bf16)",
    "lmforge_int8": "lmforge, precision int8 (opt-in: int8 frozen base)",
    "lmforge_compile": "lmforge, auto + runtime.compile (opt-in)",
}
HELDOUT = 16


# ----------------------------------------------------------------------------- shared workload
def build_model(kind: str, method: str, seed: int, fused: bool = False, dropout: float = 0.0):
    """The benchmark model: a ~110M Llama (hidden 768, 12 layers, vocab 32000) or SmolLM2-135M (real
    weights); LoRA r=16 / alpha 32 on all linear layers, ``dropout`` (0 unless ``--lora-dropout``;
    ``fused``: built the way lmforge's LoRA method builds it) or full fine-tuning."""
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

        config = LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
        if fused:
            from lmforge.methods.lora.fused import register_fused_linear

            register_fused_linear(config, model)
        torch.manual_seed(seed + 1)  # same adapter initialisation with and without the fused layer
        model = get_peft_model(model, config)
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


def heldout_loss(model, examples: list[dict], device) -> float:
    """Token-weighted next-token loss on ``examples``, one at a time, fp32, no grad."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e["input_ids"]], device=device)
            n = ids.shape[1] - 1
            total += float(model(input_ids=ids, labels=ids, use_cache=False).loss) * n
            count += n
    return total / count


# ----------------------------------------------------------------------------- workers
def run_hf(args, name: str) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer, TrainerCallback, TrainingArguments

    from lmforge.train.state import epoch_order

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.method, args.seed, dropout=args.lora_dropout)
    examples = build_examples(model.config.vocab_size, args.steps * args.batch, args.seed)
    ordered = [examples[i] for i in epoch_order(len(examples), args.seed, 0)]  # lmforge's order, read in sequence

    clock = _clock(args)

    class Timer(TrainerCallback):  # step end to step end: batch building, forward, backward, optimizer
        def __init__(self):
            self.times, self.losses = [], []

        def on_train_begin(self, *a, **k):
            self.last = clock()

        def on_step_end(self, *a, **k):
            now = clock()
            self.times.append(now - self.last)
            self.last = now

        def on_log(self, _args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    if name.endswith("_flat"):
        collator = DataCollatorWithFlattening()
    else:
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0}, unk_token="<pad>")),
                                      pad_token="<pad>")
        collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    timer = Timer()
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=args.lr, lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
        bf16="bf16" in name, use_cpu=args.device == "cpu", seed=args.seed, dataloader_num_workers=0,
        max_grad_norm=1.0, warmup_steps=0, weight_decay=0.0, disable_tqdm=True, remove_unused_columns=False,
        train_sampling_strategy="sequential",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=_ListDataset(ordered), data_collator=collator,
                      callbacks=[timer])
    trainer.train()
    return _summary(args, model, ordered, timer.times, timer.losses)


def run_lmforge(args, name: str) -> dict:
    """lmforge's own loop on the same model and examples: packed padding-free micro-batches (one
    row per example, concatenated), packed attention, fused LoRA layers, chunked loss."""
    import torch

    from lmforge.config.schema import RuntimeConfig, TrainConfig
    from lmforge.objectives import build_objective, get_objective_spec
    from lmforge.train import train
    from lmforge.train.callbacks import Callback
    from lmforge.train.state import epoch_order

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.method, args.seed, fused=True, dropout=args.lora_dropout)
    examples = build_examples(model.config.vocab_size, args.steps * args.batch, args.seed)
    rows = [{"input_ids": e["input_ids"], "labels": [-100] + e["labels"][1:], "lengths": [len(e["input_ids"])]}
            for e in examples]
    objective = build_objective("causal_lm", get_objective_spec("causal_lm").params())
    times, losses = [], []
    clock = _clock(args)

    class Timer(Callback):  # step end to step end, as for HF
        def on_begin(self, plan, state):
            self.last = clock()

        def on_step(self, state, logs):
            now = clock()
            times.append(now - self.last)
            self.last = now
            losses.append(logs["loss_sum"] / max(logs["units"], 1))

    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_ratio=0.0, scheduler="constant",
                      log_every=1, tensorboard=False, eval_every=10_000, save_every=10_000)
    runtime_cfg = RuntimeConfig(precision={"lmforge_fp32": "fp32", "lmforge_int8": "int8"}.get(name, "auto"),
                                device=args.device, threads=args.threads, compile=name == "lmforge_compile")
    train(model, objective, rows, train_cfg=cfg, runtime_cfg=runtime_cfg, run_dir=Path(tempfile.mkdtemp()),
          collate=lambda feats: objective.collate(feats, None), evaluate_fn=None, seed=args.seed,
          best_metric="loss", metric_mode="min", callbacks=[Timer()])
    ordered = [examples[i] for i in epoch_order(len(examples), args.seed, 0)]
    return _summary(args, model, ordered, times, losses)


def _clock(args):
    """Wall clock, or this process's CPU time (``--clock cpu``, 1 thread: robust to other jobs
    sharing the cores, for comparisons on a busy machine)."""
    return time.process_time if args.clock == "cpu" else time.perf_counter


class _ListDataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return dict(self.rows[i])


def _summary(args, model, ordered, times, losses) -> dict:
    """Throughput over steps 2.. (the first step pays one-off allocations), peak RSS, held-out loss."""
    import torch

    measured = times[1:] if len(times) > 1 else times
    tokens_per_step = [sum(len(e["input_ids"]) for e in ordered[i * args.batch:(i + 1) * args.batch])
                       for i in range(len(times))]
    tokens = sum(tokens_per_step[1:] if len(times) > 1 else tokens_per_step)
    seconds = sum(measured)
    flops_per_token = (4 if args.method == "lora" else 6) * linear_params(model)
    peak = (torch.cuda.max_memory_allocated() / 1e9 if args.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    held = build_examples(model.config.vocab_size, HELDOUT, args.seed + 1000)
    return {
        "tokens_per_s": tokens / seconds,
        "peak_gb": peak,
        "gflops": flops_per_token * tokens / seconds / 1e9,
        "losses": losses,
        "step_s": statistics.median(measured),
        "first_step_s": times[0] if times else 0.0,
        "heldout_loss": heldout_loss(model, held, torch.device(args.device)),
    }


# ----------------------------------------------------------------------------- driver
def machine() -> dict:
    """CPU model and the flags that decide the kernels (AVX-512, native bf16, AMX, VNNI), the load."""
    info = {"cpu": "unknown", "flags": [], "load": os.getloadavg()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
        info["flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma", "avx_vnni"))
    except (OSError, StopIteration):
        pass
    return info


AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def native_bf16(device: str) -> bool:
    """bf16 matmuls in hardware here (lmforge's own answer: CUDA's, or the CPU flags unless oneDNN is held below
    them, as ``--isa avx2`` does: bf16 then falls to a reference path, minutes per step)."""
    import torch

    from lmforge.model.decode import native_bf16 as lmforge_native_bf16

    return lmforge_native_bf16(torch.device(device))


def default_configs(device: str, method: str) -> list[str]:
    """Every configuration that makes sense here: bf16 ones only with native bf16 (emulated bf16 takes
    minutes per step), lmforge_auto only where auto resolves to bf16, lmforge_int8 for LoRA on CPUs
    with int8 dot-product instructions."""
    import torch

    from lmforge.hardware import cpu_int8_matmul_exact
    from lmforge.train.runtime import choose_precision

    native = native_bf16(device)
    configs = [c for c in ALL_CONFIGS if native or "bf16" not in c]
    if not native or choose_precision("auto", torch.device(device)) != "bf16":
        configs.remove("lmforge_auto")
    vnni = set(machine()["flags"]) & {"avx512_vnni", "avx_vnni", "amx_int8"}
    if device != "cpu" or method != "lora" or not vnni or not cpu_int8_matmul_exact():  # lmforge refuses int8 there
        configs.remove("lmforge_int8")
    return configs


def matmul_peak(threads: int, device: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    out = {"fp32": 0.0, "bf16": 0.0}  # emulated bf16 (no native support) is not measured: reported as 0
    native = native_bf16(device)
    for name, dtype in [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if native else []):
        a = torch.randn(2048, 2048, dtype=dtype, device=device)
        b = torch.randn(2048, 2048, dtype=dtype, device=device)
        for _ in range(3):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        reps = 10
        for _ in range(reps):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        out[name] = 2 * 2048**3 * reps / (time.perf_counter() - t0) / 1e9
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["llama110m", "smollm2"], default="llama110m")
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lora-dropout", type=float, default=0.0,
                   help="LoRA dropout for every configuration (0.05 is lmforge's default; peft's is 0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: time steps by process CPU time (needs --threads 1); for a machine other jobs share")
    p.add_argument("--configs", default="auto", help="comma-separated names, or auto (see above)")
    p.add_argument("--isa", choices=["native", "avx2"], default="native",
                   help="avx2: hold torch's kernels and oneDNN to AVX2, fp32 only (a proxy; see above)")
    p.add_argument("--json", default=None, help="write all results to this JSON file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu measures one thread's work: use --threads 1")
    if args.isa == "avx2":
        if args.device != "cpu":
            p.error("--isa avx2 is a CPU proxy: use --device cpu")
        os.environ.update(AVX2_ENV)  # before torch is imported here; the workers inherit it
    if args.worker:
        result = run_lmforge(args, args.worker) if args.worker.startswith("lmforge") else run_hf(args, args.worker)
        print("RESULT " + json.dumps(result))
        return 0

    configs = default_configs(args.device, args.method) if args.configs == "auto" else args.configs.split(",")
    unknown = [c for c in configs if c not in ALL_CONFIGS + OPT_IN]
    if unknown:
        p.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(ALL_CONFIGS + OPT_IN)}")
    if args.isa == "avx2" and any("bf16" in c or c in ("lmforge_auto", "lmforge_int8", "lmforge_compile")
                                  for c in configs):
        p.error("--isa avx2 runs the fp32 configurations only (bf16 and int8 have no AVX2 kernels to measure)")
    host = machine()
    peak = matmul_peak(args.threads, args.device)
    print(f"machine: {host['cpu']}; flags {' '.join(host['flags'])}; load before {host['load']}")
    if args.isa == "avx2":
        import torch

        print(f"PROXY: kernels held to AVX2 ({' '.join(f'{k}={v}' for k, v in AVX2_ENV.items())}); "
              f"torch CPU capability now {torch.backends.cpu.get_cpu_capability()}")
    print(f"matmul peak here: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s (0 = not native)")
    rounds: list[dict] = []
    for r in range(args.rounds):
        row = {}
        for name in configs:  # interleaved: every round runs every configuration once
            cmd = [sys.executable, __file__, "--worker", name] + [
                f"--{k}={v}" for k, v in (("model", args.model), ("method", args.method), ("steps", args.steps),
                                          ("batch", args.batch), ("threads", args.threads), ("seed", args.seed),
                                          ("lr", args.lr), ("device", args.device), ("clock", args.clock),
                                          ("lora-dropout", args.lora_dropout))]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{name} failed")
            row[name] = json.loads(line[7:])
            print(f"round {r + 1} {name:<15} {row[name]['tokens_per_s']:8.0f} tok/s  {row[name]['peak_gb']:.2f} GB  "
                  f"{row[name]['gflops']:.0f} GFLOP/s  held-out loss {row[name]['heldout_loss']:.4f}", flush=True)
        rounds.append(row)
    host["load_after"] = os.getloadavg()
    print(report(args, configs, rounds, peak, host))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "machine": host, "peak": peak, "rounds": rounds},
                                              indent=1))
    return 0


def report(args, configs, rounds, peak, host) -> str:
    keys = ("tokens_per_s", "peak_gb", "gflops", "heldout_loss")
    med = {n: {k: statistics.median(r[n][k] for r in rounds) for k in keys} for n in configs}
    memory = "peak GPU memory (GB)" if args.device == "cuda" else "peak RSS (GB)"
    dropout = f", LoRA dropout {args.lora_dropout:g}" if args.method == "lora" else ""
    lines = [f"\n{args.model}, {args.method}{dropout}, batch {args.batch}, {args.steps} steps, {args.rounds} rounds, "
             f"{args.threads} threads, {args.device}, {args.clock} clock (medians); {host['cpu']}; load before {host['load']}, "
             f"after {host['load_after']}", "",
             f"| configuration | real tokens/s | {memory} | GFLOP/s | % of matmul peak | held-out loss |",
             "| --- | --- | --- | --- | --- | --- |"]
    for n in configs:
        m = med[n]
        lines.append(f"| {LABELS[n]} | {m['tokens_per_s']:.0f} | {m['peak_gb']:.2f} | {m['gflops']:.0f} | "
                     f"{100 * m['gflops'] / max(peak['fp32'], peak['bf16']):.0f}% | {m['heldout_loss']:.4f} |")
    hf = [n for n in configs if n.startswith("hf")]
    ours = [n for n in configs if n.startswith("lmforge") and n not in ("lmforge_int8", "lmforge_compile")]
    if "lmforge_compile" in configs and "lmforge_auto" in configs:  # compile time sits in the first steps
        per_round = [r["lmforge_auto"]["step_s"] / r["lmforge_compile"]["step_s"] for r in rounds]
        lines.append(f"\nruntime.compile: median step {statistics.median(r['lmforge_compile']['step_s'] for r in rounds):.2f} s "
                     f"vs {statistics.median(r['lmforge_auto']['step_s'] for r in rounds):.2f} s eager; speed-up per round "
                     f"{', '.join(f'{x:.2f}x' for x in per_round)}; held-out loss "
                     f"{med['lmforge_compile']['heldout_loss']:.5f} vs {med['lmforge_auto']['heldout_loss']:.5f}; "
                     f"first step {statistics.median(r['lmforge_compile']['first_step_s'] for r in rounds):.0f} s "
                     f"(compiling) vs {statistics.median(r['lmforge_auto']['first_step_s'] for r in rounds):.1f} s")
    if hf and "lmforge_int8" in configs:
        best_hf = max(hf, key=lambda n: med[n]["tokens_per_s"])
        ratios = [r["lmforge_int8"]["tokens_per_s"] / r[best_hf]["tokens_per_s"] for r in rounds]
        lines.append(f"\nopt-in int8 / HF best tokens/s per round: {', '.join(f'{x:.2f}x' for x in ratios)} "
                     f"(median {statistics.median(ratios):.2f}x); held-out loss {med['lmforge_int8']['heldout_loss']:.4f} "
                     f"vs {med[best_hf]['heldout_loss']:.4f}")
    if hf and ours:
        best_hf = max(hf, key=lambda n: med[n]["tokens_per_s"])
        best_ours = max(ours, key=lambda n: med[n]["tokens_per_s"])
        ratios = [r[best_ours]["tokens_per_s"] / r[best_hf]["tokens_per_s"] for r in rounds]
        lines.append(f"\n{LABELS[best_ours]} / {LABELS[best_hf]} (HF best) tokens/s per round: "
                     f"{', '.join(f'{x:.2f}x' for x in ratios)} (median {statistics.median(ratios):.2f}x); "
                     f"peak memory {med[best_ours]['peak_gb']:.2f} vs {med[best_hf]['peak_gb']:.2f} GB")
        base = rounds[0][best_hf]["losses"]
        for n in configs:
            other = rounds[0][n]["losses"]
            if n != best_hf and other:
                diff = max(abs(a - b) for a, b in zip(base, other))
                lines.append(f"loss curve {n} vs {best_hf}: max |diff| {diff:.4f} over {min(len(base), len(other))} "
                             f"steps (same micro-batches in the same order)")
        lines.append(f"loss curve {best_hf}: {' '.join(f'{x:.3f}' for x in base)}")
        lines.append(f"loss curve {best_ours}: {' '.join(f'{x:.3f}' for x in rounds[0][best_ours]['losses'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
