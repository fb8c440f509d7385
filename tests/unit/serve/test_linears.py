"""Fused projections (lmforge.serve.linears): one matmul for q/k/v and for gate/up, the same outputs per projection."""

from __future__ import annotations

import torch
from torch import nn

from lmforge.serve.linears import ProjectionSlice, SharedInputLinear, fuse_projections, replace_linears
from lmforge.serve.quantize import quantize_linears_int8


def _tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()


def test_fused_projections_give_each_projection_its_own_output(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    ids = torch.tensor([[1, 5, 9, 3, 7, 11]])
    attn = model.model.layers[0].self_attn
    h = torch.randn(1, 6, attn.q_proj.in_features)
    with torch.no_grad():
        before = {n: getattr(attn, n)(h) for n in ("q_proj", "k_proj", "v_proj")}
        ref = model(ids).logits
    layers = len(model.model.layers)
    assert fuse_projections(model) == 2 * layers
    assert isinstance(attn.q_proj, ProjectionSlice) and isinstance(attn.fused_q_proj_v_proj, SharedInputLinear)
    assert sum(type(m) is nn.Linear for m in model.modules()) == 4 * layers + 1  # qkv, o, gate_up, down; lm_head
    with torch.no_grad():
        # one output channel is one dot product either way: fused and separate agree to fp32 rounding
        for name, want in before.items():
            got = getattr(attn, name)(h)
            assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-6, atol=1e-6)
        assert torch.allclose(model(ids).logits, ref, rtol=1e-5, atol=1e-5)


def test_the_product_is_reused_only_for_the_same_input_object(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    fuse_projections(model)
    attn = model.model.layers[0].self_attn
    group = attn.fused_q_proj_v_proj
    calls = []
    group.linear.register_forward_hook(lambda _m, _a, _o: calls.append(1))
    h = torch.randn(1, 3, attn.q_proj.in_features)
    with torch.no_grad():
        attn.q_proj(h), attn.k_proj(h)
        assert len(calls) == 1 and group._last is not None
        attn.v_proj(h)
        assert len(calls) == 1 and group._last is None  # every part taken: the product is not kept alive
        same_values = h.clone()  # equal numbers, another tensor: computed again
        k_again = attn.k_proj(same_values)
        assert len(calls) == 2 and torch.equal(k_again, attn.k_proj(h)) and len(calls) == 3


def test_int8_of_fused_projections_equals_int8_of_each(tiny_llama_dir):
    """Per-output-channel scales: quantizing the concatenated weight quantizes each row as before."""
    separate, fused = _tiny(tiny_llama_dir), _tiny(tiny_llama_dir)
    quantize_linears_int8(separate)
    fuse_projections(fused)
    quantize_linears_int8(fused)
    ids = torch.tensor([[1, 5, 9, 3, 7, 11]])
    with torch.no_grad():
        assert torch.allclose(fused(ids).logits, separate(ids).logits, rtol=1e-5, atol=1e-5)


def test_hooked_or_mismatched_projections_are_left_alone():
    block = nn.Module()
    block.q_proj, block.k_proj, block.v_proj = nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 4, bias=False)
    block.gate_proj, block.up_proj = nn.Linear(8, 16), nn.Linear(8, 16)
    block.up_proj.register_forward_hook(lambda _m, _a, o: o * 2)
    assert fuse_projections(block) == 0  # v_proj has no bias where q/k have one; up_proj has a hook
    assert replace_linears(block, lambda lin: nn.Identity()) == 4  # the hooked layer stays
    assert type(block.up_proj) is nn.Linear


def _decode(model, monkeypatch, lean: bool):
    from lmforge.model import fastdecode
    from lmforge.model.generate import generate_tokens

    used = []

    def spy(m, cache):
        found = fastdecode.lean_decoder(m, cache) if lean else None
        used.append(found is not None)
        return found

    monkeypatch.setattr("lmforge.model.decode.lean_decoder", spy)
    with torch.no_grad():
        out = generate_tokens(model, [[5, 9, 17, 33], [7, 12]], max_new_tokens=5, stop_ids=[], pad_id=0,
                              keep_logits=True, precision="model")
    assert used == [lean]
    return out


def test_the_lean_step_computes_fused_groups_once_and_honours_hooks_on_a_slice(tiny_llama_dir, monkeypatch):
    model = _tiny(tiny_llama_dir)
    fuse_projections(model)
    calls = []
    group = model.model.layers[0].self_attn.fused_q_proj_v_proj
    group.linear.register_forward_hook(lambda _m, _a, _o: calls.append(1))
    fast = _decode(model, monkeypatch, True)
    assert len(calls) == 5  # the prefill and one per later token: q, k and v from one product
    slow = _decode(model, monkeypatch, False)
    for a, b in zip(fast, slow):
        assert a.tokens == b.tokens
        assert all(torch.allclose(x, y, rtol=1e-5, atol=1e-5) for x, y in zip(a.logits, b.logits))
    # a hook on one slice must run: the lean step then calls each projection as a module
    model.model.layers[1].self_attn.k_proj.register_forward_hook(lambda _m, _a, out: out * 3)
    fast, slow = _decode(model, monkeypatch, True), _decode(model, monkeypatch, False)
    for a, b in zip(fast, slow):
        assert all(torch.allclose(x, y, rtol=1e-5, atol=1e-5) for x, y in zip(a.logits, b.logits))
