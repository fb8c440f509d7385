"""Data preparation users can trust: normalise, filter, deduplicate, redact, label-check, split,
augment, convert, with an audit trail (``manifest.json`` + ``report.md``).

Entry point: :func:`run_prepare` on canonical records (a list or a one-shot iterator; see
``lmforge.data``); it streams, holding compact per-example state only. Torch-free (model
paraphrases take an already loaded model: :class:`lmforge.data.prepare.paraphrase.ModelParaphraser`).
"""

from lmforge.data.prepare.run import PrepareResult, run_prepare

__all__ = ["PrepareResult", "run_prepare"]
