"""GGUF export: written with the gguf package, reloaded by transformers' GGUF loader, parity-checked."""

from __future__ import annotations

import json

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.errors import UserError
from lmforge.export.gguf import export_gguf, pre_tokenizer_name, verify_gguf
from lmforge.export.modelfile import write_modelfile
from lmforge.export.parity import ParityError

PROMPTS = [[{"role": "user", "content": "what is the capital of france?"}], "the price of the food is"]


def _bpe_tokenizer():
    """A tiny byte-level BPE tokenizer (GPT-2 style) trained in-process, with the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.fixtures.tiny import CHATML, WORDS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(WORDS[i:i + 8]) for i in range(0, len(WORDS), 3)] * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="module")
def bpe_llama_dir(tmp_path_factory):
    """A random tiny Llama (2 layers, hidden 64, 4 heads / 2 kv heads) over the BPE tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("bpe_llama")
    tok = _bpe_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True, rope_theta=5000.0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the default init: logits with a real spread
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(bpe_llama_dir):
    return (AutoModelForCausalLM.from_pretrained(bpe_llama_dir, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(bpe_llama_dir))


def _field(reader, key):
    return reader.fields[key].contents()


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_export_reloads_within_tolerance(bpe_llama_dir, reference, tmp_path, outtype):
    path = export_gguf(bpe_llama_dir, tmp_path / "model.gguf", outtype)
    result = verify_gguf(*reference, path, PROMPTS, outtype=outtype, max_new_tokens=8)
    assert result.passed and all(result.tokenizer.values())
    assert json.loads((tmp_path / "parity.json").read_text())["format"] == f"gguf-{outtype}"
    if outtype == "f32":
        assert result.max_abs_logit_diff < 1e-4  # Q/K permutation and name mapping are exact
    reader = gguf.GGUFReader(path)
    tok = reference[1]
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.rope.freq_base") == 5000.0
    assert _field(reader, "llama.attention.head_count_kv") == 2
    assert _field(reader, "tokenizer.ggml.model") == "gpt2" and _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tok.convert_tokens_to_ids("<|im_end|>")
    assert _field(reader, "tokenizer.ggml.eot_token_id") == tok.convert_tokens_to_ids("<|im_end|>")
    assert _field(reader, "tokenizer.chat_template") == tok.chat_template
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in types  # tied embeddings stay tied
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.1.attn_q.weight"] == {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}[outtype]


def test_untied_output_head_is_exported(bpe_llama_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(bpe_llama_dir, dtype=torch.float32, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.randn_like(model.lm_head.weight))
    tok = AutoTokenizer.from_pretrained(bpe_llama_dir)
    model.save_pretrained(tmp_path / "untied")
    tok.save_pretrained(tmp_path / "untied")
    path = export_gguf(tmp_path / "untied", tmp_path / "out" / "model.gguf", "f32")
    assert "output.weight" in {t.name for t in gguf.GGUFReader(path).tensors}
    result = verify_gguf(model.eval(), tok, path, PROMPTS, outtype="f32", max_new_tokens=4)
    assert result.passed and result.max_abs_logit_diff < 1e-4


def test_corrupted_tensor_is_caught(bpe_llama_dir, reference, tmp_path):
    bad = AutoModelForCausalLM.from_pretrained(bpe_llama_dir, dtype=torch.float32)
    with torch.no_grad():
        bad.model.layers[0].self_attn.v_proj.weight.mul_(-1.0)
    bad.save_pretrained(tmp_path / "bad")
    reference[1].save_pretrained(tmp_path / "bad")
    path = export_gguf(tmp_path / "bad", tmp_path / "out" / "model.gguf", "f16")
    with pytest.raises(ParityError, match="logit diff"):
        verify_gguf(*reference, path, PROMPTS, outtype="f16", max_new_tokens=4)
    assert json.loads((tmp_path / "out" / "parity.json").read_text())["passed"] is False


def test_wrong_eos_is_caught(bpe_llama_dir, reference, tmp_path):
    AutoModelForCausalLM.from_pretrained(bpe_llama_dir).save_pretrained(tmp_path / "bad")
    tok = AutoTokenizer.from_pretrained(bpe_llama_dir)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(tmp_path / "bad")
    path = export_gguf(tmp_path / "bad", tmp_path / "out" / "model.gguf", "f32")
    with pytest.raises(ParityError, match="eos_token differs") as err:
        verify_gguf(*reference, path, PROMPTS, outtype="f32", max_new_tokens=4)
    assert err.value.result.max_abs_logit_diff < 1e-4  # the weights were right; only the EOS was wrong


def test_word_level_tokenizer_is_refused(tiny_llama_dir, tmp_path):
    with pytest.raises(UserError, match="byte-level BPE"):
        export_gguf(tiny_llama_dir, tmp_path / "model.gguf", "f16")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_non_llama_is_refused(tiny_bert_dir, tmp_path):
    with pytest.raises(UserError, match="Llama-architecture"):
        export_gguf(tiny_bert_dir, tmp_path / "model.gguf", "f16")


def test_unknown_outtype_is_refused(bpe_llama_dir, tmp_path):
    with pytest.raises(UserError, match="outtype"):
        export_gguf(bpe_llama_dir, tmp_path / "model.gguf", "q4_k")


def test_pre_tokenizer_names():
    bpe = {"model": {"type": "BPE"}, "decoder": {"type": "ByteLevel"}}
    assert pre_tokenizer_name({**bpe, "pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}) == "gpt-2"
    smollm = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                    {"type": "ByteLevel", "use_regex": True}]}
    assert pre_tokenizer_name({**bpe, "pre_tokenizer": smollm}) == "smollm"
    with pytest.raises(UserError, match="pre-tokenizer"):
        pre_tokenizer_name({**bpe, "pre_tokenizer": {"type": "Whitespace"}})
    with pytest.raises(UserError, match="byte fallback"):
        pre_tokenizer_name({"model": {"type": "BPE", "byte_fallback": True}, "decoder": {"type": "Sequence"}})


@pytest.mark.slow
def test_smollm2_q8_0_with_modelfile(smollm2_dir, tmp_path):
    """Real weights and the real 49k-token BPE vocabulary (2 of 30 layers, to stay fast)."""
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, num_hidden_layers=2, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(tmp_path / "merged")
    path = export_gguf(tmp_path / "merged", tmp_path / "gguf" / "model.gguf", "q8_0")
    result = verify_gguf(model, tok, path, PROMPTS[:1], outtype="q8_0", max_new_tokens=8)
    assert result.passed and 0 < result.max_abs_logit_diff < result.logit_bound
    text = write_modelfile(path, tok).read_text()
    assert text.startswith("FROM ./model.gguf") and 'PARAMETER stop "<|im_end|>"' in text
    assert "SYSTEM \"\"\"You are a helpful AI assistant named SmolLM" in text
