"""Evaluation: metrics, held-out evaluation runs, sample generations and before -> after reports.

Import what you need from its modules (this package imports nothing, so ``metrics`` / ``report`` stay cheap):

- :mod:`~lmforge.evaluate.run`: ``evaluate`` (held-out metrics of a model on encoded features)
- :mod:`~lmforge.evaluate.generate`: ``sample_generations``, ``generate_replies``, ``generate_reply`` (the engine itself: :mod:`lmforge.model.generate`)
- :mod:`~lmforge.evaluate.metrics`, :mod:`~lmforge.evaluate.textmetrics`, :mod:`~lmforge.evaluate.uncertainty`
- :mod:`~lmforge.evaluate.intervals`: intervals for every metric and paired tests from per-example rows
- :mod:`~lmforge.evaluate.samples`: repetitive / truncated flags on sample answers
- :mod:`~lmforge.evaluate.report` / :mod:`~lmforge.evaluate.html`: ``write_report``, ``format_comparison``
- :mod:`~lmforge.evaluate.compare` / :mod:`~lmforge.evaluate.retrieval`: prompting vs RAG vs fine-tuning
"""
