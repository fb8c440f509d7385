"""serve.dtype int8: weight-only int8 linear layers (opt-in), their error bound, and what the server refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lmforge.config.serve import ServeConfig
from lmforge.errors import UserError
from lmforge.serve.quantize import Int8WeightOnlyLinear, quantize_linears_int8

from .conftest import LiveServer, http


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 5, 40])
@pytest.mark.parametrize("width", [64, 72])  # 64: torch's int8 kernel; 72 (not a multiple of 16): dequantized
def test_int8_linear_is_within_its_quantization_bound(bias, rows, width):
    torch.manual_seed(0)
    linear = nn.Linear(width, 40, bias=bias)
    x = torch.randn(2, rows, width)
    got = Int8WeightOnlyLinear(linear)(x)
    flat = torch.randn(rows * width + 8).bfloat16()
    shifted = flat[8:].view(rows, width)  # contiguous bf16 rows that start 16 bytes off the kernel's alignment
    assert shifted.data_ptr() % 64 and torch.equal(Int8WeightOnlyLinear(linear)(shifted),
                                                   Int8WeightOnlyLinear(linear)(shifted.clone()))
    with torch.no_grad():
        ref = linear(x)
    assert got.shape == ref.shape and got.dtype == x.dtype
    # each weight is off by at most max|row| / 254 (half a quantization step); the kernel sees x in bf16 (relative
    # rounding 2^-8 per element); both errors summed over the K inputs bound an output element's error
    row_max = linear.weight.abs().amax(dim=1)
    bound = (x.abs() @ torch.ones(width, 40)) * (row_max / 254) + (x.abs() @ linear.weight.abs().t()) * 2 ** -8
    assert torch.all((got - ref).abs() <= bound * 1.01 + 1e-5)
    assert not torch.equal(got, ref)  # it is quantized: the numbers do change


def test_quantize_replaces_every_linear_and_keeps_the_embedding(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        ref = model(ids).logits
    linears = sum(type(m) is nn.Linear for m in model.modules())
    assert quantize_linears_int8(model) == linears > 0
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert isinstance(model.get_output_embeddings(), Int8WeightOnlyLinear)
    assert model.get_input_embeddings().weight.dtype == torch.float32
    with torch.no_grad():
        got = model(ids).logits
    assert got.dtype == torch.float32
    # a 2-layer random model: the logits move by a small fraction of their spread, and the same inputs give the
    # same outputs (integer weights: deterministic)
    assert (got - ref).abs().max() < 0.05 * ref.std()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, got)


def test_server_with_int8_answers_and_refuses_what_it_cannot_serve(tiny_llama_dir, tiny_bert_dir, models_dir):
    from lmforge.serve import create_app
    from lmforge.serve.store import ModelStore, ServeTarget, serve_dtype

    assert serve_dtype("int8", "causal") == "int8"
    app = create_app(Path(tiny_llama_dir), ServeConfig(model_name="tiny", dtype="int8", log={"enabled": False},
                                                       drift={"enabled": False}))
    store = app.state.lm.store
    assert store.int8 and isinstance(store.model.get_output_embeddings(), Int8WeightOnlyLinear)
    live = LiveServer(app)
    try:
        status, body = http("POST", live.url + "/v1/chat/completions",
                            {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                             "temperature": 0})
    finally:
        live.stop()
    assert status == 200 and body["usage"]["completion_tokens"] >= 1
    with pytest.raises(UserError, match="serve.dtype: int8") as err:
        ModelStore(ServeTarget(base=Path(tiny_bert_dir), name="e", models_dir=Path(tiny_bert_dir)), "int8")
    assert "encoder" in str(err.value)
    with pytest.raises(UserError, match="serve.dtype: int8 cannot serve PEFT adapters"):
        ModelStore(ServeTarget(base=Path(tiny_llama_dir), name="m", models_dir=models_dir,
                               adapters={"alpha": models_dir / "alpha"}), "int8")


def test_example_serve_config_validates_and_selects_int8():
    from lmforge.config.serve import load_serve_config

    example = Path(__file__).resolve().parents[3] / "examples" / "serve" / "int8.yaml"
    cfg = load_serve_config(str(example), [])
    assert cfg.dtype == "int8" and cfg.host == "127.0.0.1" and cfg.limits.max_batch_size == 8
    assert load_serve_config(str(example), ["dtype=auto"]).dtype == "auto"  # KEY=VALUE still wins
