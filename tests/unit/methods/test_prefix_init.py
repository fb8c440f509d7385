"""Prefix tuning's ``init: vocab``: the untrained prefix is the frozen model's own keys / values for
random vocabulary tokens (decoders: their cache; encoders: their key / value projections)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from lmforge.methods import METHODS, build_method
from tests.contracts.cases import fresh_base, make_batch, task_for

N = 3


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _prefix_model(head, dirs, seed=0, **params):
    method = build_method("prefix_tuning", METHODS["prefix_tuning"].params.model_validate({"num_virtual_tokens": N, **params}))
    base = fresh_base(head, dirs)
    torch.manual_seed(seed)  # the token ids are drawn from torch's global RNG (the run seeds it)
    return method.apply(base, task_for(head))


def _init(model):
    """Re-run the vocab init on ``model``; the token ids it drew."""
    from lmforge.methods.prefix_tuning.method import init_prefix_from_vocab

    torch.manual_seed(5)
    return init_prefix_from_vocab(model, N)


def test_decoder_prefix_is_its_cache_for_the_drawn_tokens(dirs):
    model = _prefix_model("causal_lm", dirs, init="random")
    base = model.get_base_model()
    ids = _init(model)
    with torch.no_grad():
        cache = base(input_ids=ids, use_cache=True).past_key_values
        prompt = model.get_prompt(batch_size=1)
    for layer in (0, len(cache) - 1):
        keys, values = (cache.layers[layer].keys, cache.layers[layer].values) if hasattr(cache, "layers") else cache[layer]
        got = prompt[layer] if not hasattr(prompt, "layers") else (prompt.layers[layer].keys, prompt.layers[layer].values)
        torch.testing.assert_close(got[0], keys, rtol=0, atol=0)
        torch.testing.assert_close(got[1], values, rtol=0, atol=0)


def test_encoder_prefix_is_its_key_value_projections_for_the_drawn_tokens(dirs):
    model = _prefix_model("sequence_classification", dirs, init="random")
    base = model.get_base_model()
    ids = _init(model)
    base.eval()
    with torch.no_grad():
        hidden = base(input_ids=ids, output_hidden_states=True).hidden_states
        attention = base.base_model.encoder.layer[1].attention.self  # layer 1 reads hidden_states[1]
        heads = base.config.num_attention_heads
        key = attention.key(hidden[1]).view(1, N, heads, -1).transpose(1, 2)
        value = attention.value(hidden[1]).view(1, N, heads, -1).transpose(1, 2)
        prompt = model.get_prompt(batch_size=1)
    layer = prompt[1] if not hasattr(prompt, "layers") else (prompt.layers[1].keys, prompt.layers[1].values)
    torch.testing.assert_close(layer[0], key, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer[1], value, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("head", ["causal_lm", "sequence_classification"])
def test_vocab_init_differs_from_random_and_trains(dirs, head):
    vocab = _prefix_model(head, dirs)
    random = _prefix_model(head, dirs, init="random")
    w_vocab = vocab.prompt_encoder["default"].embedding.weight
    w_random = random.prompt_encoder["default"].embedding.weight
    assert w_vocab.requires_grad and not torch.equal(w_vocab, w_random)
    batch = make_batch(head, dirs)
    vocab.train()
    vocab(**batch).loss.backward()
    assert w_vocab.grad is not None and w_vocab.grad.abs().sum() > 0


def test_init_vocab_with_a_projection_is_refused_but_projection_alone_starts_random():
    params = METHODS["prefix_tuning"].params
    with pytest.raises(ValidationError, match="init: random"):
        params.model_validate({"projection": True, "init": "vocab"})
    assert params.model_validate({"projection": True}).init_from_vocab is False
    assert params.model_validate({}).init_from_vocab is True
