"""Right padding to the longest row; labels padded with -100; attention mask marks real tokens."""

from __future__ import annotations

import torch

from lmforge.data.collate import collate_causal, collate_classification


def test_collate_causal_pads_right():
    batch = collate_causal(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}], pad_id=0
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["input_ids"].dtype == torch.long


def test_collate_classification_with_token_types():
    batch = collate_classification(
        [
            {"input_ids": [1, 2], "token_type_ids": [0, 1], "label": 1},
            {"input_ids": [3, 4, 5], "token_type_ids": [0, 0, 1], "label": 0},
        ],
        pad_id=9,
    )
    assert batch["input_ids"].tolist() == [[1, 2, 9], [3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert batch["labels"].tolist() == [1, 0]


def test_collate_classification_without_token_types():
    batch = collate_classification([{"input_ids": [1], "label": 2}], pad_id=0)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


def test_importing_the_data_stage_loads_no_torch_or_transformers():
    import subprocess
    import sys

    code = "import sys, lmforge.data; print(sorted({'torch', 'transformers', 'datasets'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
