"""Typed, strict run configuration. Imports no torch (``lmforge validate`` stays instant)."""

from lmforge.config.load import apply_overrides, load_config, parse_config, read_config, save_resolved
from lmforge.config.schema import (
    DataConfig,
    EvalConfig,
    ExportConfig,
    ModelConfig,
    ChoiceConfig,
    RunConfig,
    RunSection,
    RuntimeConfig,
    SourceConfig,
    TrainConfig,
)

__all__ = [
    "ChoiceConfig",
    "DataConfig",
    "EvalConfig",
    "ExportConfig",
    "ModelConfig",
    "RunConfig",
    "RunSection",
    "RuntimeConfig",
    "SourceConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
    "read_config",
    "save_resolved",
]
