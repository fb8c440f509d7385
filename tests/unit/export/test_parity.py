"""check_parity: passes on a faithful export, fails loudly (ParityError + parity.json) on planted mismatches."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.export.parity import TOLERANCES, ParityError, Tolerance, check_parity, verify_merged

PROMPTS = [[{"role": "user", "content": "what is the capital of france ?"}], "the bank loan interest rate is"]


@pytest.fixture(scope="module")
def reference(tiny_llama_dir):
    return (AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(tiny_llama_dir))


def _reload(folder):
    return lambda: (AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(),
                    AutoTokenizer.from_pretrained(folder))


def _check(reference, load, tmp_path, **kw):
    model, tok = reference
    tol = TOLERANCES["float32"]
    return check_parity(model, tok, load, PROMPTS, atol=tol.atol, rtol=tol.rtol, max_new_tokens=6,
                        fmt="test", report_path=tmp_path / "parity.json", **kw)


def test_faithful_reload_passes_and_writes_json(reference, tiny_llama_dir, tmp_path):
    result = _check(reference, _reload(tiny_llama_dir), tmp_path)
    assert result.passed and result.greedy_equal and result.max_abs_logit_diff == 0.0
    assert all(result.tokenizer.values()) and set(result.tokenizer) >= {"vocab", "eos_token", "chat_template",
                                                                          "end_of_turn", "prompt_ids"}
    assert [g["status"] for g in result.generations] == ["equal", "equal"]
    written = json.loads((tmp_path / "parity.json").read_text())
    assert written["passed"] is True and written["tolerance"] == {"atol": 1e-4, "rtol": 1e-4}


def test_corrupted_tensor_fails(reference, tiny_llama_dir, tmp_path):
    bad = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    with torch.no_grad():
        bad.model.layers[1].mlp.down_proj.weight[0, :5] += 0.5
    bad.save_pretrained(tmp_path / "bad")
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(tmp_path / "bad")
    with pytest.raises(ParityError, match="logit diff") as err:
        _check(reference, _reload(tmp_path / "bad"), tmp_path)
    assert err.value.result.passed is False and err.value.exit_code == 1
    assert json.loads((tmp_path / "parity.json").read_text())["passed"] is False


def test_wrong_eos_fails(reference, tiny_llama_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.eos_token = "<|endoftext|>"
    load = lambda: (reference[0], tok)  # noqa: E731 - same weights, only the EOS is wrong
    with pytest.raises(ParityError, match="eos_token differs") as err:
        _check(reference, load, tmp_path)
    assert err.value.result.tokenizer["eos_token"] is False
    assert err.value.result.max_abs_logit_diff == 0.0


def test_lost_chat_template_fails(reference, tiny_llama_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.chat_template = tok.chat_template.replace("<|im_end|>", "</s>")
    with pytest.raises(ParityError, match="chat_template differs") as err:
        _check(reference, lambda: (reference[0], tok), tmp_path)
    assert err.value.result.tokenizer["end_of_turn"] is False


def test_greedy_divergence_beyond_tie_fails(reference, tmp_path):
    model, tok = reference

    class Drifting(torch.nn.Module):  # exact on the prompt, pushed toward one token once decoding from the cache
        def forward(self, **inputs):
            out = model(**inputs)
            if inputs.get("past_key_values") is not None:
                out.logits[..., 10] += 100.0
            return out

    with pytest.raises(ParityError, match="greedy generation diverged") as err:
        check_parity(model, tok, lambda: (Drifting(), tok), PROMPTS[:1], atol=1e-4, rtol=0.0, max_new_tokens=4)
    result = err.value.result
    assert result.max_abs_logit_diff == 0.0 and result.greedy_equal is False
    assert result.generations[0]["status"] == "diverged"


def test_tolerance_bound():
    assert Tolerance(atol=0.1, rtol=0.01).bound(20.0) == pytest.approx(0.3)
    assert TOLERANCES["float32"].rtol < TOLERANCES["f16"].rtol < TOLERANCES["q8_0"].rtol


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_verify_merged_per_dtype(reference, tiny_llama_dir, tmp_path, dtype):
    model, tok = reference
    saved = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=getattr(torch, dtype))
    saved.save_pretrained(tmp_path / dtype)
    tok.save_pretrained(tmp_path / dtype)
    result = verify_merged(model, tok, tmp_path / dtype, PROMPTS, dtype=dtype, max_new_tokens=4)
    assert result.passed and result.format == f"merged-{dtype}"
    assert (tmp_path / dtype / "parity.json").is_file()


def test_document_prompts_keep_max_length_tokens_not_400_characters(reference):
    from lmforge.export.parity import leading_tokens

    _, tok = reference
    text = " ".join(["the bank loan interest rate is good"] * 80)  # ~2700 characters, 560 tokens
    assert len(text) > 400 and leading_tokens(tok, text, 10_000) == text
    cut = leading_tokens(tok, text, 100)
    assert text.startswith(cut) and len(cut) > 400
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) == 100


def test_parity_result_records_its_wall_time(reference, tiny_llama_dir, tmp_path):
    result = _check(reference, _reload(tiny_llama_dir), tmp_path)
    assert result.seconds > 0 and json.loads((tmp_path / "parity.json").read_text())["seconds"] == result.seconds
