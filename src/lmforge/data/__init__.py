"""Data stage: sources (files, folders, datasets) -> canonical records -> token ids + loss masks -> batches.

Import what you need from its modules (this package imports nothing, so torch-free modules such as
``lmforge.data.formats`` stay torch-free):

- :mod:`~lmforge.data.splits`: ``load_splits(data_cfg, seed) -> Splits`` (train, eval, files)
- :mod:`~lmforge.data.encode`: ``encode_causal``, ``encode_classification``, ``label_set``
- :mod:`~lmforge.data.collate`: ``collate_causal``, ``collate_classification``
- :mod:`~lmforge.data.messages`: ``prompt_messages``, ``reference_text`` (generation samples)
- :mod:`~lmforge.data.preview`: ``preview`` (``lmforge data preview``)
- :mod:`~lmforge.data.assets`: offline datasets by name; :mod:`~lmforge.data.prepare`: ``lmforge data prepare``
"""
