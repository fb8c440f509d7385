"""Data preparation users can trust: normalise, filter, deduplicate, redact, label-check, split,
augment, convert, with an audit trail (``manifest.json`` + ``report.md``).

Entry point: :func:`run_prepare` on canonical records (see ``lmforge.data``). Torch-free.
"""

from lmforge.data.prepare.run import PrepareResult, run_prepare

__all__ = ["PrepareResult", "run_prepare"]
