"""The training stage: one loop, its runtime, optimizer, checkpoints and callbacks."""

from lmforge.train.callbacks import Callback
from lmforge.train.checkpoint import checkpoint_dir, load_trainable
from lmforge.train.loop import train
from lmforge.train.runtime import Runtime, build_runtime
from lmforge.train.state import TrainResult

__all__ = ["Callback", "Runtime", "TrainResult", "build_runtime", "checkpoint_dir", "load_trainable", "train"]
