"""The training stage: one loop, its runtime, optimizer, checkpoints and callbacks.

Names are imported lazily, so ``lmforge.train.threads`` (which the CLI calls before torch is
imported: libgomp reads ``OMP_WAIT_POLICY`` once, at load) stays importable without torch.
"""

__all__ = ["Callback", "Runtime", "TrainResult", "build_runtime", "checkpoint_dir", "load_trainable", "train"]

_HOMES = {
    "Callback": "lmforge.train.callbacks", "checkpoint_dir": "lmforge.train.checkpoint",
    "load_trainable": "lmforge.train.checkpoint", "train": "lmforge.train.loop", "Runtime": "lmforge.train.runtime",
    "build_runtime": "lmforge.train.runtime", "TrainResult": "lmforge.train.state",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
