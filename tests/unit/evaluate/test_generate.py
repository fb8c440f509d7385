"""Sample generations: greedy, only the new text, stops at eos and at the template's end-of-turn token."""

from __future__ import annotations

import pytest
import torch

from lmforge.evaluate.generate import generate, generate_reply, sample_generations, stop_token_ids, template_end_of_turn

QUESTION = [{"role": "user", "content": "what is the capital of france?"}]


def chain_llama(tokenizer, transitions: dict[str, str]):
    """A tiny Llama whose greedy next token depends only on the current token.

    Attention and MLP outputs are zeroed, so the last hidden state is the current token's
    embedding; embeddings are one-hot over the tokens in ``transitions`` and ``lm_head`` maps
    each to its successor (every other logit is 0).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=8, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg)
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.model.norm, model.model.layers[0].input_layernorm, model.model.layers[0].post_attention_layernorm):
            norm.weight.fill_(1.0)
        for dim, (src, dst) in enumerate(transitions.items()):
            model.model.embed_tokens.weight[vocab[src], dim] = 1.0
            model.lm_head.weight[vocab[dst], dim] = 10.0
    return model.eval()


def _last_prompt_token(tokenizer):
    text = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])[-1]


@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="module")
def tok_other_eos(tiny_llama_dir):
    """The tiny ChatML tokenizer with eos <|endoftext|>, so <|im_end|> is only the end-of-turn token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir, eos_token="<|endoftext|>")
    assert tok.eos_token == "<|endoftext|>"
    return tok


def test_stop_ids_include_eos_and_end_of_turn(tok_other_eos):
    vocab = tok_other_eos.get_vocab()
    assert template_end_of_turn(tok_other_eos) == "<|im_end|>"
    assert stop_token_ids(tok_other_eos) == sorted({vocab["<|endoftext|>"], vocab["<|im_end|>"]})


def test_stops_at_end_of_turn_token_that_is_not_eos(tok_other_eos):
    model = chain_llama(tok_other_eos, {_last_prompt_token(tok_other_eos): "paris", "paris": "<|im_end|>",
                                        "<|im_end|>": "paris"})
    model.generation_config.eos_token_id = tok_other_eos.eos_token_id
    assert generate_reply(model, tok_other_eos, QUESTION, max_new_tokens=6) == "paris"
    # control: stopping on eos alone runs on past the end of turn
    text = tok_other_eos.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    ids = tok_other_eos(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=tok_other_eos.eos_token_id,
                         pad_token_id=tok_other_eos.pad_token_id)
    assert tok_other_eos.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split() == ["paris"] * 3


def test_returns_only_new_text_up_to_max_new_tokens(tok):
    model = chain_llama(tok, {_last_prompt_token(tok): "paris", "paris": "paris"})
    assert generate_reply(model, tok, QUESTION, max_new_tokens=3) == "paris paris paris"
    # no end-of-turn within max_new_tokens: the answer is cut, and says so
    assert generate(model, tok, QUESTION, max_new_tokens=3) == {"text": "paris paris paris", "tokens": 3, "truncated": True}


def test_sample_generations_on_instruction_records(tok):
    model = chain_llama(tok, {_last_prompt_token(tok): "paris", "paris": "<|im_end|>"})
    records = [{"instruction": "what is the capital of france?", "input": "", "output": "paris", "system": None},
               {"instruction": "tax?", "input": "a loan", "output": "no", "system": "you are a bank"}]
    samples = sample_generations(model, tok, records, None, n=5, max_new_tokens=8)
    assert samples[0] == {"prompt": "user: what is the capital of france?", "reference": "paris", "output": "paris",
                          "tokens": 1, "truncated": False}
    assert samples[1]["prompt"] == "system: you are a bank\nuser: tax?\n\na loan" and samples[1]["reference"] == "no"
    assert sample_generations(model, tok, records, None, n=1, max_new_tokens=8) == samples[:1]


def test_random_model_is_deterministic_and_keeps_train_mode(tiny_llama_dir, tok):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).train()
    first = generate_reply(model, tok, QUESTION, max_new_tokens=5)
    assert first == generate_reply(model, tok, QUESTION, max_new_tokens=5)
    assert isinstance(first, str) and "what is the capital" not in first and "<|im_start|>" not in first
    assert model.training


@pytest.mark.slow
def test_smollm2_answers_and_stops(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    reply = generate_reply(model, tok, [{"role": "user", "content": "What is the capital of France?"}], 40)
    assert "Paris" in reply and "<|im_end|>" not in reply and "assistant" not in reply
    assert len(tok(reply)["input_ids"]) < 40  # stopped on its own
