"""Load benchmark: the lmforge server vs a plain transformers ``generate`` loop, single stream and N clients.

    .venv/bin/python benchmarks/serve_load.py [MODEL_DIR] [--clients 1 8] [--requests 16] \
        [--max-tokens 32] [--rounds 3] [--threads 1] [--dtype float32]

MODEL_DIR is an HF causal-LM folder (an exported merged model, or the SmolLM2 cache folder);
without one a tiny random Llama is built in a temp folder. For each client count C, ``--requests``
chat requests (cycling over a fixed prompt list) are sent by C loopback client threads, each
sending its next request when the previous one is answered (C=1: a single stream). All requests
are ready at t=0; a request's latency is the time from t=0 (C>1) or from its send (C=1) to its
full answer, so it includes queueing.

The baseline is what a user would write without lmforge: one ``model.generate`` call per request
(greedy, same max_tokens, stops at the model's eos), requests served one at a time in arrival
order. Both sides run in this process on the same ``--threads``; rounds interleave the two sides
(the order alternates per round) and the table shows medians over rounds and the ratio
lmforge / baseline of generated tokens per second. Prints one JSON line with every round, the
CPU model and the load average.

``--dtype`` is the weights' dtype on both sides (``float32``, ``bfloat16``): the baseline's
``from_pretrained(dtype=...)`` and the server's ``serve.dtype``. ``--dtype auto`` gives the server
``serve.dtype: auto`` (bf16 where native) and the baseline transformers' own default, the checkpoint's
dtype (``from_pretrained`` without ``dtype``: fp32 for lmforge's converted SmolLM2 cache folder).
``--dtype int8`` gives the server ``serve.dtype: int8`` (weight-only int8 linear layers, opt-in: the numbers
change slightly) against that same default baseline.

The server runs with its access log and drift statistics off (the baseline has neither); ``--drift`` turns
the drift statistics on as in ``lmforge serve``'s default configuration (the prefill then also returns every
prompt position's logits and hidden states for the monitor).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PROMPTS = ["What is the capital of France?", "Explain what a bond fund is.", "Write a short product review.",
           "How do interest rates affect loans?", "Say hello in three languages.", "What is a credit card?",
           "Can I send a money order from USPS as a business?", "What is an index fund?"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def percentiles(lat: list[float]) -> dict:
    return {f"p{q}": round(float(np.percentile(lat, q)), 4) for q in (50, 95)}


def summary(name: str, lat: list[float], tokens: int, wall: float, n: int) -> dict:
    return {"name": name, "requests": n, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 4),
            "tokens_per_s": round(tokens / wall, 3), "generated_tokens": tokens, **percentiles(lat)}


class Server:
    """``lmforge serve`` (the real app under uvicorn) on a free loopback port, in a thread."""

    def __init__(self, model_dir: Path, args):
        import uvicorn

        from lmforge.config.serve import ServeConfig
        from lmforge.serve import create_app

        biggest = max(args.clients)
        self.scratch = tempfile.TemporaryDirectory()  # the drift window (--drift) goes here, nowhere else
        drift = {"enabled": args.drift, "window_file": str(Path(self.scratch.name) / "traffic.jsonl")}
        cfg = ServeConfig(model_name="m", dtype=args.dtype, log={"enabled": False}, drift=drift,
                          limits={"max_tokens": args.max_tokens, "max_concurrent": biggest * 2,
                                  "max_batch_size": biggest, "request_timeout_s": 3600})
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        app = create_app(model_dir, cfg)
        store = app.state.lm.store
        self.dtype = "int8 weight-only" if store.int8 else str(store.model.dtype)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        for _ in range(1200):
            if self.server.started:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the server did not start within 60 s")
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/chat/completions"
        self.max_tokens = args.max_tokens

    def ask(self, prompt: str) -> int:
        body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": self.max_tokens,
                "temperature": 0}
        req = urllib.request.Request(self.url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=3600) as resp:
            return json.loads(resp.read())["usage"]["completion_tokens"]

    def run(self, prompts: list[str], clients: int) -> dict:
        t0 = time.monotonic()

        def one(prompt: str) -> tuple[float, int]:
            sent = time.monotonic()
            tokens = self.ask(prompt)
            return time.monotonic() - (sent if clients == 1 else t0), tokens

        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, prompts))
        wall = time.monotonic() - t0
        return summary("lmforge serve", [r[0] for r in results], sum(r[1] for r in results), wall, len(prompts))

    def close(self) -> None:
        self.server.should_exit = True


class GenerateLoop:
    """The baseline: one ``model.generate`` per request, served one at a time."""

    def __init__(self, model_dir: Path, args):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        dtype = "auto" if args.dtype in ("auto", "int8") else getattr(torch, args.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        self.max_tokens = args.max_tokens

    def answer(self, prompt: str) -> int:
        import torch

        text = self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                            add_generation_prompt=True)
        ids = self.tok(text, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(**ids, max_new_tokens=self.max_tokens, do_sample=False,
                                      pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        eos = self.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        return next((i + 1 for i, t in enumerate(new) if t in stops), len(new))  # the eos counts, as in lmforge

    def run(self, prompts: list[str], clients: int) -> dict:
        t0 = time.monotonic()
        lat, tokens = [], 0
        for prompt in prompts:
            sent = time.monotonic()
            tokens += self.answer(prompt)
            lat.append(time.monotonic() - (sent if clients == 1 else t0))
        return summary("transformers generate loop", lat, tokens, time.monotonic() - t0, len(prompts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "auto", "int8"], default="float32")
    p.add_argument("--drift", action="store_true", help="the server computes drift statistics (its default)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fixtures.tiny import save_tiny_llama

        model_dir = save_tiny_llama(Path(tempfile.mkdtemp(prefix="tiny_llama_")))
    baseline, server = GenerateLoop(model_dir, args), Server(model_dir, args)
    baseline.answer(PROMPTS[0]), server.ask(PROMPTS[0])  # warm-up
    from lmforge.train.threads import release_openmp_workers

    release_openmp_workers()
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    rounds: dict[int, dict[str, list[dict]]] = {c: {"baseline": [], "lmforge": []} for c in args.clients}
    for r in range(args.rounds):
        for clients in args.clients:
            sides = [("baseline", baseline), ("lmforge", server)]
            for name, side in sides if r % 2 == 0 else reversed(sides):
                rounds[clients][name].append(side.run(prompts, clients))
                # as if each side had the machine to itself (two processes): the baseline runs on this thread, the
                # server on its worker thread, and a thread's idle OpenMP workers slow the other's ops (the server's
                # worker releases its own when idle; lmforge.train.threads.release_openmp_workers)
                release_openmp_workers()
                row = rounds[clients][name][-1]
                print(f"round {r + 1} clients {clients} {row['name']}: {row['tokens_per_s']:.2f} tok/s, "
                      f"p50 {row['p50']:.2f} s", flush=True)
    server.close()
    load = os.getloadavg()
    print(f"\nCPU {cpu_name()}, {args.threads} torch thread(s), weights: baseline "
          f"{baseline.model.dtype}, server {server.dtype}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'clients':>7} {'side':28} {'req/s':>7} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} {'tok/s ratio':>11}")
    table = {}
    for clients, sides in rounds.items():
        med = {name: {k: statistics.median(r[k] for r in runs) for k in ("requests_per_s", "tokens_per_s", "p50", "p95")}
               for name, runs in sides.items()}
        ratios = [lm["tokens_per_s"] / base["tokens_per_s"] for lm, base in zip(sides["lmforge"], sides["baseline"])]
        table[clients] = {"median": med, "ratio_per_round": ratios, "ratio_median": statistics.median(ratios)}
        for name, label in (("baseline", "transformers generate loop"), ("lmforge", "lmforge serve")):
            m = med[name]
            ratio = f"{table[clients]['ratio_median']:.2f}x" if name == "lmforge" else ""
            print(f"{clients:7d} {label:28} {m['requests_per_s']:7.3f} {m['tokens_per_s']:8.2f} {m['p50']:7.2f} "
                  f"{m['p95']:7.2f} {ratio:>11}")
    print(json.dumps({"cpu": cpu_name(), "threads": args.threads, "dtype": args.dtype, "drift": args.drift,
                      "baseline_dtype": str(baseline.model.dtype), "server_dtype": server.dtype, "loadavg": load, "model": str(model_dir),
                      "requests": args.requests, "max_tokens": args.max_tokens, "table": table, "rounds": rounds}))


if __name__ == "__main__":
    main()
