"""Data stage: sources (files, folders, datasets) -> canonical records -> token ids + loss masks -> batches.

Public API (imported by pipeline.py, cli/ and later stages):

- :func:`load_splits` (data_cfg, seed) -> :class:`Splits` (train, eval, files)
- :func:`encode_causal`, :func:`encode_classification`, :func:`label_set`
- :func:`collate_causal`, :func:`collate_classification`
- :func:`prompt_messages`, :func:`reference_text` (generation samples)
- :func:`preview` (``lmforge data preview``)
- :mod:`lmforge.data.assets` (offline datasets by name)
"""

from lmforge.data.collate import collate_causal, collate_classification
from lmforge.data.encode import Encoded, encode_causal, encode_classification, label_set
from lmforge.data.messages import prompt_messages, reference_text, to_messages
from lmforge.data.preview import preview
from lmforge.data.splits import Splits, load_splits

__all__ = [
    "Encoded",
    "Splits",
    "collate_causal",
    "collate_classification",
    "encode_causal",
    "encode_classification",
    "label_set",
    "load_splits",
    "preview",
    "prompt_messages",
    "reference_text",
    "to_messages",
]
