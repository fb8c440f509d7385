"""ONNX export of a sequence classifier: onnxruntime reproduces the logits; a corrupted initializer is caught."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from lmforge.errors import UserError
from lmforge.export.onnx import OnnxClassifier, export_onnx, load_onnx, verify_onnx
from lmforge.export.parity import ParityError

PROMPTS = ["the product is good", "what a terrible price for this food , no", "yes"]


@pytest.fixture(scope="module")
def classifier(tiny_bert_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3).eval()
    return model, AutoTokenizer.from_pretrained(tiny_bert_dir)


@pytest.fixture(scope="module")
def onnx_dir(classifier, tmp_path_factory):
    return export_onnx(*classifier, tmp_path_factory.mktemp("onnx") / "onnx")


def test_export_writes_a_self_contained_folder(onnx_dir):
    assert {p.name for p in onnx_dir.iterdir()} >= {"model.onnx", "config.json", "tokenizer.json"}
    graph = onnx.load(str(onnx_dir / "model.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]  # dynamic axes
    assert json.loads((onnx_dir / "config.json").read_text())["id2label"] == {"0": "LABEL_0", "1": "LABEL_1",
                                                                               "2": "LABEL_2"}


def test_parity_passes_and_is_written(classifier, onnx_dir):
    result = verify_onnx(*classifier, onnx_dir, PROMPTS)
    assert result.passed and result.max_abs_logit_diff < 1e-4 and all(result.tokenizer.values())
    assert json.loads((onnx_dir / "parity.json").read_text())["passed"] is True


def test_padded_batch_of_other_length_matches(classifier, onnx_dir):
    model, tok = classifier
    clf, _ = load_onnx(onnx_dir)
    texts = ["good", "the bank loan interest rate is a bad rate for a credit card , yes it is", "no", "hi"]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
    got = clf(**batch).logits
    assert got.shape == (4, 3)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_corrupted_initializer_is_caught(classifier, onnx_dir, tmp_path):
    graph = onnx.load(str(onnx_dir / "model.onnx"))
    init = next(i for i in graph.graph.initializer if "classifier" in i.name and "weight" in i.name)
    array = numpy_helper.to_array(init).copy()
    array[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(array.astype(np.float32), init.name))
    bad = tmp_path / "bad"
    bad.mkdir()
    onnx.save(graph, str(bad / "model.onnx"))
    classifier[1].save_pretrained(bad)
    with pytest.raises(ParityError, match="logit diff") as err:
        verify_onnx(*classifier, bad, PROMPTS)
    assert err.value.result.max_abs_logit_diff > 1e-2
    assert json.loads((bad / "parity.json").read_text())["passed"] is False


def test_missing_token_type_ids_default_to_zeros(classifier, onnx_dir):
    model, tok = classifier
    enc = tok(["good food"], return_tensors="pt")
    clf = OnnxClassifier(onnx_dir / "model.onnx")
    with_ids = clf(**enc).logits
    without = clf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(with_ids, without)


def test_causal_lm_is_refused(tiny_llama_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with pytest.raises(UserError, match="sequence-classification"):
        export_onnx(model, AutoTokenizer.from_pretrained(tiny_llama_dir), tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
