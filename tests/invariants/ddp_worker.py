"""One process of a multi-process training run on the tiny Llama (launched by the DDP tests).

``python -m torch.distributed.run --standalone --nproc_per_node N tests/invariants/ddp_worker.py
MODEL_DIR RUN_DIR CFG_JSON [--stop-after K] [--resume]``, or :func:`forked` in processes forked
from the test (no new interpreter: much faster on a busy 2-core machine), trains ``tiny_features(N_FEATURES)``
with the JSON train config; rank 0 writes the final trainable parameters to
``RUN_DIR/final.safetensors``. ``--stop-after K`` raises (exit code 3) after step K, as a crash.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from safetensors.torch import save_file  # noqa: E402

from lmforge.config.schema import RuntimeConfig  # noqa: E402
from lmforge.data.shards import TokenShards  # noqa: E402
from lmforge.train import Callback  # noqa: E402
from lmforge.train.checkpoint import trainable_state  # noqa: E402
from lmforge.train.distributed import is_main_process  # noqa: E402
from tests.invariants.test_loop import causal_lm, fp32_cfg, pad_collate, run, tiny_features, tiny_model  # noqa: E402


class Crash(Exception):
    pass


class CrashAfter(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step(self, state, logs):
        if state.step == self.step:
            raise Crash


def eval_loss(model) -> dict[str, float]:
    """Token-weighted loss of the model on 4 fixed held-out examples (no grad)."""
    batch = pad_collate(tiny_features(4, seed=99))
    with torch.no_grad():
        out = causal_lm().eval_step(model, batch)
    return {"eval_loss": out.loss_total / out.count}


def main(argv: list[str]) -> int:
    model_dir, run_dir, cfg_json = argv[:3]
    options = json.loads(cfg_json)
    n_features = options.pop("n_features", 20)
    with_eval = options.pop("with_eval", False)
    shards = options.pop("shards", None)  # a write_token_shards folder instead of in-memory features
    distributed = options.pop("distributed", None)  # the runtime: section's distributed settings
    runtime = RuntimeConfig(device="cpu", precision="fp32", **({"distributed": distributed} if distributed else {}))
    features = TokenShards(shards) if shards else tiny_features(n_features)
    callbacks = [CrashAfter(int(argv[argv.index("--stop-after") + 1]))] if "--stop-after" in argv else []
    model = tiny_model(model_dir)
    try:
        run(model, features, run_dir, fp32_cfg(**options), callbacks=callbacks, runtime_cfg=runtime,
            resume="--resume" in argv, evaluate_fn=eval_loss if with_eval else None)
    except Crash:
        return 3
    weights = trainable_state(model)  # gathers FSDP shards: every rank takes part
    if is_main_process():
        save_file(weights, str(Path(run_dir) / "final.safetensors"))
    return 0


def forked(rank: int, world_size: int, port: int, argv: list[str]) -> None:
    """Entry of a process forked by ``torch.multiprocessing.start_processes``: torchrun's
    environment by hand, then :func:`main`; the process group is closed at the end."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    try:
        main(argv)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
