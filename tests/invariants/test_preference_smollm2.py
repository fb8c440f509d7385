"""The completion log-prob on SmolLM2's real ChatML template (which injects a default system
prompt): exactly the answer tokens + <|im_end|> are scored; prompt, system and pads never."""

from __future__ import annotations

import pytest
import torch

from lmforge.config.schema import DataConfig, ModelConfig
from lmforge.data.preference import collate_pairs, encode_pairs
from lmforge.model import load_model, load_tokenizer
from lmforge.model.task import TaskInfo
from lmforge.objectives.preference.logprobs import sequence_logps

pytestmark = pytest.mark.slow

PAIR = {"prompt": "What is the capital of France?", "chosen": "The capital of France is Paris.",
        "rejected": "I think it is Lyon, but I am not sure."}


def test_smollm2_completion_mask_and_logps(smollm2_dir):
    cfg = ModelConfig(name=str(smollm2_dir), overrides={"num_hidden_layers": 2})
    tok = load_tokenizer(cfg)
    data = DataConfig(format="preference", train="x", max_length=256)
    (feature,) = encode_pairs([PAIR], tok, data)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for side in ("chosen", "rejected"):
        ids, labels = feature[f"{side}_ids"], feature[f"{side}_labels"]
        assert "You are a helpful AI assistant named SmolLM" in tok.decode(ids)  # the template's system prompt
        expected = tok(PAIR[side], add_special_tokens=False)["input_ids"] + [im_end]
        assert [t for t in labels if t != -100] == expected
        first = next(i for i, t in enumerate(labels) if t != -100)
        assert all(t == -100 for t in labels[:first]) and ids[first:first + len(expected)] == expected

    model = load_model(cfg, TaskInfo("causal_lm")).eval()
    batch = collate_pairs([feature], tok.pad_token_id)
    with torch.no_grad():
        sums, counts = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        for row, side in enumerate(("chosen", "rejected")):
            ids, labels = feature[f"{side}_ids"], feature[f"{side}_labels"]
            logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
            manual = sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1) if labels[t + 1] != -100)
            assert counts[row].item() == sum(1 for t in labels if t != -100)
            assert sums[row].item() == pytest.approx(manual, abs=1e-3)
