"""Per-token time of a causal LM's linear layers at one row (a decode step): fp32, bf16, packed, weight-only int8.

    .venv/bin/python benchmarks/decode_kernels.py [MODEL_DIR] [--threads 2] [--rows 1 8 32]

MODEL_DIR is an HF causal-LM folder (default: the SmolLM2 cache folder lmforge converts on first use); only its
config.json is read. Every linear layer of the model gets its own random weight (so the weights stream from
memory as in a real step, not from cache) and is multiplied by ``--rows`` activation rows with ``torch.mm``
(fp32, bf16: what ``F.linear`` does), with the weight packed once for oneDNN (``fp32 packed``, ``bf16 packed``:
what the server runs, :mod:`lmforge.serve.packed`; where oneDNN cannot pack bf16, ``bf16 widened`` instead: the
server's ``WidenedLinear``, bf16 below 16 rows, fp32 products of the widened weight from 16) and ``torch.ops.aten._weight_int8pack_mm`` (int8 weights, bf16
activations: what ``serve.dtype: int8`` runs, :mod:`lmforge.serve.quantize`), for the model's own layers and with
q/k/v and gate/up fused into one layer each (as the server fuses them, :mod:`lmforge.serve.linears`). Prints ms
per forward of all linear layers, the median of ``--repeats``, and the CPU. Then the quality cost of each dtype on the real model when
``--quality`` is given: the loss of 64 FiQA reference answers given their question, and how many of 16 greedy
32-token answers equal the fp32 ones, for fp32, bf16, bf16 as the server runs it (fused, packed) and int8.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def shapes(config: dict) -> list[tuple[int, int]]:
    """(out, in) of every linear layer of a Llama-style decoder, the output projection included."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or h // heads
    block = [(heads * head_dim, h), (kv * head_dim, h), (kv * head_dim, h), (h, heads * head_dim),
             (inter, h), (inter, h), (h, inter)]
    return block * layers + [(config["vocab_size"], h)]


def fused(dims: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The same layers with q/k/v and gate/up concatenated (7 layers a block -> 4)."""
    out = []
    for start in range(0, len(dims) - 1, 7):
        q, k, v, o, gate, up, down = dims[start:start + 7]
        out += [(q[0] + k[0] + v[0], q[1]), o, (gate[0] + up[0], gate[1]), down]
    return out + dims[-1:]


def linear_times(dims: list[tuple[int, int]], rows: int, repeats: int) -> dict[str, float]:
    import torch

    from lmforge.methods.lora.int8 import quantize_weight

    weights = [torch.randn(o, i) * 0.02 for o, i in dims]
    w16 = [w.bfloat16() for w in weights]
    q = [(qw, s.bfloat16()) for qw, s in map(quantize_weight, weights)]
    xs = {i: torch.randn(rows, i) for i in {i for _, i in dims}}
    x16 = {i: x.bfloat16() for i, x in xs.items()}
    pack = torch.ops.mkldnn._reorder_linear_weight
    p32 = [(pack(w, 1), w.shape[1]) for w in weights]
    try:
        p16 = [(pack(w, 1), w.shape[1]) for w in w16]
    except RuntimeError:  # oneDNN packs bf16 only with AVX512-BW/VL/DQ or AVX-NE-CONVERT (not under the AVX2 caps)
        p16 = None

    widened = None  # where oneDNN cannot pack bf16 the server widens bf16 layers for many rows instead
    if p16 is None:
        from lmforge.serve.packed import WidenedLinear

        widened = []
        for w in w16:
            linear = torch.nn.utils.skip_init(torch.nn.Linear, w.shape[1], w.shape[0], bias=False, dtype=w.dtype)
            linear.weight.data = w
            widened.append(WidenedLinear(linear))

    def packed(xs_, ps):
        return [torch.ops.mkldnn._linear_pointwise(xs_[i], p, None, "none", [], "") for p, i in ps]

    sides = {
        "fp32": lambda: [torch.mm(xs[w.shape[1]], w.t()) for w in weights],
        "fp32 packed": lambda: packed(xs, p32),
        "bf16": lambda: [torch.mm(x16[w.shape[1]], w.t()) for w in w16],
        **({"bf16 packed": lambda: packed(x16, p16)} if p16 else {}),
        **({"bf16 widened": lambda: [m(x16[m.in_features]) for m in widened]} if widened else {}),
        "int8": lambda: [torch.ops.aten._weight_int8pack_mm(x16[qw.shape[1]], qw, s) for qw, s in q],
    }
    out: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):  # interleaved
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            out[name].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v[1:] or v) for k, v in out.items()}


def quality(model_dir: Path) -> dict:
    import json as _json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.data.assets import asset_path
    from lmforge.model.generate import generate_tokens, stop_token_ids
    from lmforge.serve.linears import fuse_projections
    from lmforge.serve.packed import pack_linears
    from lmforge.serve.quantize import quantize_linears_int8

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = asset_path("fiqa")
    rows = [_json.loads(line) for line in data.read_text().splitlines()[:64]]

    def ids(messages, prompt=False):
        return list(tok.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=True,
                                            return_dict=True)["input_ids"])

    result, reference = {}, None
    for name in ("float32", "bfloat16", "bfloat16 served", "int8"):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if name.startswith("bfloat16")
                                                     else torch.float32).eval()
        if name == "int8":
            fuse_projections(model)
            quantize_linears_int8(model)
        if name == "bfloat16 served":  # what lmforge serve runs with serve.dtype auto on a native-bf16 CPU
            fuse_projections(model)
            pack_linears(model)
        total, count = 0.0, 0
        with torch.no_grad():
            for r in rows:
                question = [{"role": "user", "content": r["question"]}]
                prompt, full = ids(question, True), ids(question + [{"role": "assistant", "content": r["answer"]}])[:384]
                logits = model(torch.tensor([full])).logits[0, :-1].float()
                logp = torch.log_softmax(logits, -1).gather(1, torch.tensor(full[1:])[:, None])[:, 0]
                total -= logp[len(prompt) - 1:].sum().item()
                count += len(full) - len(prompt)
        answers = [g.tokens for g in generate_tokens(model, [ids([{"role": "user", "content": r["question"]}], True)
                                                             for r in rows[:16]], max_new_tokens=32,
                                                     stop_ids=stop_token_ids(tok, model), precision="model")]
        reference = reference or answers
        result[name] = {"answer_loss": round(total / count, 4),
                        "greedy_identical_to_fp32": sum(a == b for a, b in zip(answers, reference))}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?", default=str(Path.home() / ".cache/lmforge/models/smollm2-135m-instruct"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--quality", action="store_true")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir)
    dims = shapes(json.loads((model_dir / "config.json").read_text()))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    print(f"CPU {cpu}, {args.threads} threads, {len(dims)} linear layers of {model_dir.name}; load {os.getloadavg()}")
    for label, layers in (("", dims), (" fused", fused(dims))):
        for rows in args.rows:
            t = linear_times(layers, rows, args.repeats)
            print(f"rows {rows:3d}{label}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in t.items())
                  + f" per forward of all {len(layers)} linears")
    if args.quality:
        print(json.dumps(quality(model_dir)))


if __name__ == "__main__":
    main()
