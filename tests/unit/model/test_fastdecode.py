"""The lean decode step (lmforge.model.fastdecode) computes what transformers' forward computes.

Each check prefills with the model's forward, then feeds the same tokens to the forward (with its DynamicCache)
and to the lean step (with its buffers) and compares the next-token logits at every step (teacher forcing, so a
near-tie cannot make the two paths diverge), on tiny random models of every supported architecture, with
left padding, GQA and rows leaving the batch.

Tolerances. fp32: both paths do the same sums in a different order and grouping (``F.rms_norm`` vs mean of
squares, one SDPA call vs transformers' attention); a length-K fp32 sum in another order differs by about
sqrt(K) x 6e-8 relative, K <= 64 here: ~5e-7, a few such steps per layer over 2 layers: the bound
1e-5 x max|logit| + 1e-5 leaves > 30x room
(measured 1.5e-7..3e-7 x max|logit|). bf16 weights: transformers keeps keys, values
and the attention in bf16, the lean step in fp32; a bf16 rounding is 2^-9 relative, so the attention outputs
differ by up to ~4e-3 relative, the logits through 2 layers by a few of those: bound 3e-2 x max|logit| + 3e-2
(measured 3e-3..8e-3 x max|logit|).
"""

from __future__ import annotations

import pytest
import torch

from lmforge.model import fastdecode
from lmforge.model.decode import left_pad
from lmforge.model.generate import generate_tokens

VOCAB = 96


def _config(arch: str):
    import transformers as tf

    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=512, pad_token_id=0,
                  tie_word_embeddings=False)
    if arch == "llama":
        return tf.LlamaConfig(**common, attention_bias=True), tf.LlamaForCausalLM
    if arch == "llama3":  # length-independent rope scaling (rope_type llama3) and tied embeddings
        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
        return tf.LlamaConfig(**{**common, "tie_word_embeddings": True}, rope_parameters=rope), tf.LlamaForCausalLM
    if arch == "mistral":
        return tf.MistralConfig(**common, sliding_window=None), tf.MistralForCausalLM
    if arch == "qwen2":
        return tf.Qwen2Config(**common), tf.Qwen2ForCausalLM
    if arch == "qwen3":
        return tf.Qwen3Config(**common), tf.Qwen3ForCausalLM
    raise ValueError(arch)


def _model(arch: str, dtype=torch.float32, seed: int = 0):
    config, cls = _config(arch)
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():  # random norms and biases, so a skipped weight or bias shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    return model.to(dtype)


PROMPTS = [[5, 9, 17, 33, 2, 8, 41], [7, 7, 12], [60, 3, 22, 90, 14]]


def _bound(reference: torch.Tensor, rel: float) -> float:
    return rel + rel * float(reference.abs().max())


@torch.no_grad()
def _teacher_forced(model, steps: int, keep_after: int | None = None, dtype_rel: float = 1e-5):
    """Prefill PROMPTS, then ``steps`` tokens through both paths; compare logits every step. With ``keep_after``,
    rows 0 and 2 only continue after that many steps (row 1 leaves the batch)."""
    ids, mask = left_pad(PROMPTS, 0, torch.device("cpu"))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache = out.past_key_values
    lean = fastdecode.lean_decoder(model, cache)
    assert isinstance(lean, fastdecode.LeanDecoder)
    lean.start(cache, extra=steps)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        if keep_after is not None and step == keep_after:
            index = torch.tensor([0, 2])
            cache.reorder_cache(index)
            lean.keep(index)
            mask, positions = mask[index], positions[index]
        rows = mask.shape[0]
        tokens = torch.randint(1, VOCAB, (rows,), generator=gen)
        mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=1)
        positions = positions[:, -1:] + 1
        ref = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions, past_key_values=cache,
                    use_cache=True).logits[:, -1].float()
        got = lean.step(tokens, positions, mask)
        assert got.shape == ref.shape and got.dtype == torch.float32
        assert (got - ref).abs().max() <= _bound(ref, dtype_rel), (step, float((got - ref).abs().max()))


@pytest.mark.parametrize("arch", ["llama", "llama3", "mistral", "qwen2", "qwen3"])
def test_lean_step_equals_the_forward_in_fp32(arch):
    _teacher_forced(_model(arch), steps=6, keep_after=3)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_lean_step_equals_the_forward_in_bf16(arch):
    _teacher_forced(_model(arch, torch.bfloat16), steps=5, keep_after=2, dtype_rel=3e-2)


def test_buffers_grow_past_their_first_size(monkeypatch):
    monkeypatch.setattr(fastdecode, "GROW", 2)
    _teacher_forced(_model("llama"), steps=7, keep_after=4)


def _greedy(model, monkeypatch, lean: bool):
    used = []
    real = fastdecode.lean_decoder

    def spy(m, cache):
        found = real(m, cache) if lean else None
        used.append(found is not None)
        return found

    monkeypatch.setattr("lmforge.model.decode.lean_decoder", spy)
    results = generate_tokens(model, PROMPTS, max_new_tokens=[9, 3, 6], stop_ids=[], pad_id=0, batch_size=3,
                              keep_logits=True, precision="model")
    assert used == [lean]
    return results


def test_generation_through_the_lean_step_matches_the_forward(monkeypatch):
    """Greedy decoding with rows of different lengths: same tokens, logits within the fp32 bound."""
    model = _model("qwen2")
    fast, slow = _greedy(model, monkeypatch, True), _greedy(model, monkeypatch, False)
    for a, b in zip(fast, slow):
        assert a.tokens == b.tokens and a.finish_reason == b.finish_reason == "length"
        for x, y in zip(a.logits, b.logits):
            assert (x - y).abs().max() <= _bound(y, 1e-5)


def test_peft_lora_and_bottleneck_adapters_take_part(monkeypatch):
    """The lean step calls the projections as modules: a LoRA wrapper and lmforge's adapter hooks count."""
    from peft import LoraConfig, get_peft_model

    from lmforge.methods.adapter.module import attach_adapter

    model = get_peft_model(_model("llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                                       init_lora_weights=False)).eval()
    _teacher_forced(model, steps=4)
    plain = _model("llama")
    adapter = attach_adapter(plain.model.layers[1].mlp.down_proj, 4, "relu")
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.5)
    _teacher_forced(plain, steps=4)
    fast, slow = _greedy(plain, monkeypatch, True), _greedy(plain, monkeypatch, False)
    assert [r.tokens for r in fast] == [r.tokens for r in slow]


def test_models_it_does_not_cover_decode_through_the_forward():
    out = lambda m: m(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True).past_key_values  # noqa: E731
    hooked = _model("llama")
    handle = hooked.model.layers[0].mlp.register_forward_hook(lambda _m, _a, o: o * 2)
    assert fastdecode.lean_decoder(hooked, out(hooked)) is None
    handle.remove()
    assert fastdecode.lean_decoder(hooked, out(hooked)) is not None
    import transformers as tf

    windowed = tf.MistralForCausalLM(tf.MistralConfig(**{**_config("mistral")[0].to_dict(), "sliding_window": 4}))
    assert fastdecode.lean_decoder(windowed, out(windowed)) is None
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2))
    assert fastdecode.lean_decoder(gpt2, out(gpt2)) is None
    model = _model("llama")
    static = tf.StaticCache(config=model.config, max_cache_len=16)
    assert fastdecode.lean_decoder(model, static) is None


def test_lean_step_under_bf16_autocast_as_grpo_samples():
    """GRPO samples inside the training step's autocast: both paths then run their matmuls in bf16."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _teacher_forced(_model("llama"), steps=4, keep_after=2, dtype_rel=3e-2)


def test_transformers_output_capturing_hooks_do_not_turn_the_lean_step_off():
    """A forward with output_hidden_states (the server's drift statistics) leaves transformers' inert capturing
    hooks on the layers; the lean step still runs, and still computes what the forward computes."""
    model = _model("llama")
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True, use_cache=True)
    assert len(out.hidden_states) == 3
    assert any(m._forward_hooks for m in model.modules())  # what transformers left behind
    assert fastdecode.lean_decoder(model, out.past_key_values) is not None
    _teacher_forced(model, steps=3)
    model.model.layers[0].register_forward_hook(lambda _m, _a, o: o)  # any other hook still counts
    assert fastdecode.lean_decoder(model, out.past_key_values) is None
