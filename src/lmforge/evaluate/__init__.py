"""Evaluation: metrics, held-out evaluation runs, sample generations and before -> after reports.

Heavy modules (torch) load lazily, so ``lmforge.evaluate.metrics`` / ``report`` stay cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "classification_metrics": "lmforge.evaluate.metrics",
    "lm_metrics": "lmforge.evaluate.metrics",
    "evaluate": "lmforge.evaluate.run",
    "sample_generations": "lmforge.evaluate.generate",
    "generate_reply": "lmforge.evaluate.generate",
    "generate_replies": "lmforge.evaluate.generate",
    "stop_token_ids": "lmforge.evaluate.generate",
    "write_report": "lmforge.evaluate.report",
    "format_comparison": "lmforge.evaluate.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lmforge.evaluate' has no attribute {name!r}")


# Issue 7 extras (generation metrics, uncertainty, calibration, HTML report, retrieval, compare).
_EXTRAS = {
    "textmetrics": ["generation_metrics", "generation_intervals", "normalize_answer", "exact_match", "token_f1"],
    "uncertainty": ["bootstrap_interval", "paired_bootstrap", "approximate_randomization"],
    "calibration": ["expected_calibration_error"],
    "html": ["write_html_report", "markdown_summary"],
    "retrieval": ["BM25Retriever", "DenseRetriever", "build_prompt_with_context"],
    "compare": ["run_compare", "write_compare_report"],
}
_EXPORTS.update({name: f"lmforge.evaluate.{module}" for module, names in _EXTRAS.items() for name in names})
__all__ = sorted(_EXPORTS)
