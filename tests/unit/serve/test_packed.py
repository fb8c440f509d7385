"""Packed linear layers (lmforge.serve.packed): the same products as nn.Linear, and when the server uses them.

Tolerance: oneDNN sums the K products of an output element in its own blocked order; in fp32 a length-K sum in
another order differs by about sqrt(K) x 6e-8 relative to the sum of |terms| (K <= 96 here: < 1e-6), bound
1e-5 x (|x| @ |W|.T) + 1e-6. In bf16 both sides round inputs the same way and accumulate in fp32, the outputs are
rounded to bf16 (2^-9 relative) and may differ by one bf16 step: bound 2^-7 x |ref| + 1e-2 x (|x| @ |W|.T).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lmforge.serve.packed import PackedLinear, pack_linears, packing_available

from .conftest import make_adapter

pytestmark = pytest.mark.skipif(not packing_available(), reason="torch built without oneDNN")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 24), (3, 1, 72), (2, 9, 96), (40, 13)])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_computes_the_linear(dtype, shape, bias):
    if not packing_available(dtype):  # bf16 on an AVX2-only CPU: pack_linears keeps F.linear (tested below)
        pytest.skip(f"oneDNN cannot pack {dtype} on this CPU")
    torch.manual_seed(0)
    linear = nn.Linear(shape[-1], 33, bias=bias).to(dtype)
    x = torch.randn(*shape).to(dtype)
    packed = PackedLinear(linear)
    with torch.no_grad():
        ref = linear(x)
        got = packed(x)
        scale = x.abs().float() @ linear.weight.abs().float().t()
    assert got.shape == ref.shape and got.dtype == dtype
    if dtype == torch.float32:
        bound = 1e-5 * scale + 1e-6
    else:
        bound = 2 ** -7 * ref.float().abs() + 1e-2 * scale
    assert torch.all((got.float() - ref.float()).abs() <= bound)
    assert "weight" not in dict(packed.named_parameters()) and "packed" not in packed.state_dict()


def _mixed_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8).half(), nn.Embedding(4, 8), nn.Linear(8, 8).bfloat16())


def test_pack_linears_replaces_fp32_and_bf16_linears_on_cpu_only():
    model = _mixed_model()
    bf16 = packing_available(torch.bfloat16)
    assert pack_linears(model) == 1 + bf16
    assert [type(m).__name__ for m in model] == ["PackedLinear", "Linear", "Embedding", "PackedLinear" if bf16 else "Linear"]


def test_a_dtype_onednn_cannot_pack_here_keeps_its_linear(monkeypatch):
    """oneDNN refuses to pack bf16 on a CPU without AVX512-BW/VL/DQ or AVX-NE-CONVERT (an AVX2-only CPU): the
    server must still load a bf16 model there, with those layers unpacked (the real refusal is exercised in a
    subprocess with oneDNN held to AVX2 in tests/unit/test_hardware.py)."""
    monkeypatch.setattr("lmforge.serve.packed.packing_available", lambda dtype=torch.float32: dtype == torch.float32)
    model = _mixed_model()
    assert pack_linears(model) == 1
    assert [type(m).__name__ for m in model] == ["PackedLinear", "Linear", "Embedding", "Linear"]


def _greedy(store, prompt, n=8):
    from lmforge.model.generate import generate_tokens

    with torch.inference_mode():
        return generate_tokens(store.model, [prompt], max_new_tokens=n, stop_ids=[], pad_id=0, precision="model",
                               keep_logits=True)[0]


def test_the_server_packs_a_plain_causal_lm_and_unpacks_it_for_a_runtime_adapter(tiny_llama_dir, tmp_path):
    from lmforge.config.serve import ServeConfig
    from lmforge.serve.store import ModelStore, resolve_target

    target = resolve_target(Path(tiny_llama_dir), ServeConfig())
    packed = ModelStore(target, dtype="float32")
    plain_model_store = ModelStore(target, dtype="float32")
    plain_model_store.model, _ = plain_model_store._load()
    assert packed.reshaped and any(isinstance(m, PackedLinear) for m in packed.model.modules())
    assert packed.layout == "float32 weights, q/k/v and gate/up fused, packed for oneDNN"
    assert not any(isinstance(m, PackedLinear) for m in plain_model_store.model.modules())
    prompt = [5, 9, 17, 33, 2, 8, 41]
    a, b = _greedy(packed, prompt), _greedy(plain_model_store, prompt)
    assert a.tokens == b.tokens
    for x, y in zip(a.logits, b.logits):  # fp32 sums in another order, 2 layers: as the decode tests' bound
        assert (x - y).abs().max() <= 1e-5 + 1e-5 * y.abs().max()

    adapter = make_adapter(Path(tiny_llama_dir), tmp_path / "gamma", seed=3)
    packed.add_adapter("gamma", adapter)
    assert not packed.reshaped and not any(isinstance(m, PackedLinear) for m in packed.model.modules())
    with packed.activate("gamma"):
        adapted = _greedy(packed, prompt)
    with packed.activate(packed.name):
        assert _greedy(packed, prompt).tokens == a.tokens
    plain_model_store.add_adapter("gamma", adapter)
    with plain_model_store.activate("gamma"):
        assert adapted.tokens == _greedy(plain_model_store, prompt).tokens


def test_the_server_packs_encoders_but_not_int8_or_configured_adapters(tiny_llama_dir, tiny_bert_dir, models_dir):
    from transformers import AutoModel

    from lmforge.config.serve import ServeConfig
    from lmforge.serve.store import ModelStore, resolve_target

    encoder = ModelStore(resolve_target(Path(tiny_bert_dir), ServeConfig()))
    assert encoder.reshaped and encoder.layout == "float32 weights, packed for oneDNN"
    plain = AutoModel.from_pretrained(tiny_bert_dir).eval()
    enc = encoder.tokenizer(["the stock fund is good", "hi"], return_tensors="pt", padding=True)
    with torch.no_grad():  # fp32 sums of <= 64 terms in another order, 2 layers: well inside 1e-5
        ref, got = plain(**enc).last_hidden_state, encoder.model(**enc).last_hidden_state
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert not ModelStore(resolve_target(Path(tiny_llama_dir), ServeConfig()), dtype="int8").reshaped
    with_adapter = ModelStore(resolve_target(Path(tiny_llama_dir), ServeConfig(models_dir=str(models_dir),
                                                                               adapters={"alpha": "alpha"})))
    assert not with_adapter.reshaped and "alpha" in with_adapter.adapters


def test_a_fused_but_unpacked_model_is_reloaded_for_a_runtime_adapter_too(tiny_llama_dir, tmp_path):
    """float16 weights are not packed, but q/k/v and gate/up are still fused: PEFT needs the plain layers back."""
    from lmforge.config.serve import ServeConfig
    from lmforge.serve.linears import ProjectionSlice
    from lmforge.serve.store import ModelStore, resolve_target

    store = ModelStore(resolve_target(Path(tiny_llama_dir), ServeConfig()), dtype="float16")
    assert store.reshaped and not any(isinstance(m, PackedLinear) for m in store.model.modules())
    assert any(isinstance(m, ProjectionSlice) for m in store.model.modules())
    store.add_adapter("gamma", make_adapter(Path(tiny_llama_dir), tmp_path / "gamma", seed=3))
    assert not store.reshaped and "gamma" in store.adapters
    assert not any(isinstance(m, ProjectionSlice) for m in store.model.modules())


@pytest.mark.parametrize("rows", [1, 5, 16, 41])
@pytest.mark.parametrize("bias", [False, True])
def test_widened_linear_computes_the_bf16_linear(rows, bias):
    """Below WIDEN_ROWS the layer is F.linear in bf16; from it on, fp32 products of the same bf16 values, in chunks
    of output channels (chunk 7 x in_features here: 33 channels in 5 chunks, the last one short). Bound as the
    packed bf16 layer's above: both sum exact products in fp32 in some order and round once to bf16."""
    from lmforge.serve.packed import WIDEN_ROWS, WidenedLinear

    torch.manual_seed(0)
    linear = nn.Linear(24, 33, bias=bias).bfloat16()
    widened = WidenedLinear(linear, chunk=7 * 24)
    assert widened.step == 7
    x = torch.randn(rows, 1, 24).bfloat16()
    with torch.no_grad():
        ref = linear(x)
        got = widened(x)
        exact = x.double() @ linear.weight.double().t() + (linear.bias.double() if bias else 0)
        scale = x.abs().double() @ linear.weight.abs().double().t()
    assert got.shape == ref.shape == (rows, 1, 33) and got.dtype == torch.bfloat16
    # rounding to bf16 (2^-9 relative) of an fp32 sum of K = 24 exact products (error <= (K - 1) 2^-24 x scale)
    assert torch.all((got.double() - exact).abs() <= 2 ** -8 * exact.abs() + 2 * 24 * 2 ** -24 * scale)
    if rows < WIDEN_ROWS:
        assert torch.equal(got, ref)
    else:
        assert torch.all((got.float() - ref.float()).abs() <= 2 ** -7 * ref.float().abs() + 1e-5 * scale.float())
    # the weight is the linear's own tensor (a tied output layer keeps sharing it with the embedding)
    assert widened.weight.data_ptr() == linear.weight.data_ptr()


def test_widen_linears_takes_bf16_layers_only_where_onednn_cannot_pack_them(monkeypatch):
    from lmforge.serve.packed import widen_linears

    model = _mixed_model()
    assert widen_linears(model) == (0 if packing_available(torch.bfloat16) else 1)
    monkeypatch.setattr("lmforge.serve.packed.packing_available", lambda dtype=torch.float32: dtype == torch.float32)
    model = _mixed_model()
    assert pack_linears(model) == 1 and widen_linears(model) == 1
    assert [type(m).__name__ for m in model] == ["PackedLinear", "Linear", "Embedding", "WidenedLinear"]


def test_the_server_widens_bf16_layers_where_onednn_cannot_pack_them(tiny_llama_dir, monkeypatch):
    """An AVX2-only CPU (oneDNN refuses bf16 there; the refusal itself runs in tests/unit/test_hardware.py): a bf16
    causal LM is fused and widened, and decodes a prompt long enough to widen its prefill (>= WIDEN_ROWS tokens)
    to the plain bf16 model's logits within bf16 rounding: each layer's output may differ by one bf16 step
    (2^-8 relative) where the two fp32 sums round differently; 2 layers, bound 2^-4 of the largest logit."""
    from lmforge.config.serve import ServeConfig
    from lmforge.serve.packed import WIDEN_ROWS, WidenedLinear
    from lmforge.serve.store import ModelStore, resolve_target

    monkeypatch.setattr("lmforge.serve.packed.packing_available", lambda dtype=torch.float32: dtype == torch.float32)
    target = resolve_target(Path(tiny_llama_dir), ServeConfig())
    store = ModelStore(target, dtype="bfloat16")
    assert store.layout == "bfloat16 weights, q/k/v and gate/up fused, bf16 widened to float32 for many rows"
    assert any(isinstance(m, WidenedLinear) for m in store.model.modules())
    plain = ModelStore(target, dtype="bfloat16")
    plain.model, _ = plain._load()
    prompt = [(7 * i + 3) % 97 + 1 for i in range(WIDEN_ROWS + 9)]
    calls = []
    for module in store.model.modules():
        if isinstance(module, WidenedLinear):
            module.register_forward_pre_hook(lambda _, args: calls.append(args[0].numel() // args[0].shape[-1]))
    a, b = _greedy(store, prompt), _greedy(plain, prompt)
    assert max(calls) >= WIDEN_ROWS and min(calls) == 1  # the prefill widened, the decode steps did not
    for x, y in zip(a.logits, b.logits):
        assert (x.float() - y.float()).abs().max() <= 2 ** -4 * y.float().abs().max()
