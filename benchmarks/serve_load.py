"""Load benchmark: the lmforge server under N concurrent loopback clients vs a plain generate loop.

    .venv/bin/python benchmarks/serve_load.py MODEL_DIR [--clients 8] [--requests 32] [--max-tokens 32]

MODEL_DIR is an HF causal-LM folder (e.g. an exported merged model, or the SmolLM2 cache);
without one a tiny random Llama is built in a temp folder. All requests arrive at t=0; a
request's latency is the time from its arrival to its full answer. The baseline serves the same
prompts one at a time with ``model.generate`` (greedy, same max_tokens). Prints a table and one
JSON line: throughput (requests/s, generated tokens/s) and p50/p95/p99 latency for both.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PROMPTS = ["What is the capital of France?", "Explain what a bond fund is.", "Write a short product review.",
           "How do interest rates affect loans?", "Say hello in three languages.", "What is a credit card?"]


def percentiles(lat: list[float]) -> dict:
    return {f"p{q}": round(float(np.percentile(lat, q)), 4) for q in (50, 95, 99)}


def run_server_load(model_dir: Path, args) -> dict:
    import uvicorn

    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    cfg = ServeConfig(model_name="m", log={"enabled": False}, drift={"enabled": False},
                      limits={"max_tokens": args.max_tokens, "max_concurrent": args.clients * 2,
                              "max_batch_size": args.clients, "request_timeout_s": 600})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(model_dir, cfg), log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the server did not start within 30 s")
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/chat/completions"

    def one(prompt: str, t0: float) -> tuple[float, int]:
        body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens,
                "temperature": 0}
        req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            out = json.loads(resp.read())
        return time.monotonic() - t0, out["usage"]["completion_tokens"]

    one(PROMPTS[0], time.monotonic())  # warm-up
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        results = list(pool.map(lambda p: one(p, t0), prompts))
    wall = time.monotonic() - t0
    server.should_exit = True
    return summary("lmforge serve", [r[0] for r in results], sum(r[1] for r in results), wall, len(prompts))


def run_generate_loop(model_dir: Path, args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    lat, tokens, t0 = [], 0, time.monotonic()
    for i, p in enumerate([PROMPTS[0], *prompts]):  # the first one is a warm-up
        if i == 1:
            t0, lat, tokens = time.monotonic(), [], 0
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=args.max_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
        lat.append(time.monotonic() - t0)
    return summary("transformers generate loop", lat, tokens, time.monotonic() - t0, len(prompts))


def summary(name: str, lat: list[float], tokens: int, wall: float, n: int) -> dict:
    return {"name": name, "requests": n, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 3),
            "tokens_per_s": round(tokens / wall, 2), "generated_tokens": tokens, **percentiles(lat)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fixtures.tiny import save_tiny_llama

        model_dir = save_tiny_llama(Path(tempfile.mkdtemp(prefix="tiny_llama_")))
    rows = [run_generate_loop(model_dir, args), run_server_load(model_dir, args)]
    print(f"{'':28} {'req/s':>8} {'tok/s':>9} {'p50 s':>8} {'p95 s':>8} {'p99 s':>8}")
    for r in rows:
        print(f"{r['name']:28} {r['requests_per_s']:8.2f} {r['tokens_per_s']:9.1f} {r['p50']:8.3f} "
              f"{r['p95']:8.3f} {r['p99']:8.3f}")
    print(json.dumps({"clients": args.clients, "max_tokens": args.max_tokens, "model": str(model_dir),
                      "results": rows}))


if __name__ == "__main__":
    main()
