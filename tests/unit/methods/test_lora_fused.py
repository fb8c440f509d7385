"""The fused LoRA training layer equals peft's LoRA layer: outputs, gradients, adapters, fallbacks."""

from __future__ import annotations

import copy

import pytest
import torch

from lmforge.methods import METHODS, build_method
from lmforge.methods.lora.dropout import draw_key, keep_mask
from lmforge.methods.lora.fused import FusedLoraLinear, register_fused_linear
from lmforge.methods.lora.method import lora_config
from tests.contracts.cases import fresh_base, task_for


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir):
    return {"causal_lm": tiny_llama_dir}


def _params(**kw):
    return METHODS["lora"].params.model_validate({"r": 4, "alpha": 8, **kw})


class HashDropout(torch.nn.Module):
    """peft's dropout slot drawing lmforge's masks: a key per call from the generator, in layer order,
    as the fused layers do, so both models drop the same elements (autograd differentiates this one)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * keep_mask(x.numel(), draw_key(), self.p).view(x.shape) / (1 - self.p)


def _pair(dirs, **kw):
    """(peft's LoRA model, lmforge's fused one) with the same non-zero adapter weights; peft's
    dropout draws lmforge's hashed masks (its own Bernoulli masks are another sample of the same
    distribution)."""
    from peft import get_peft_model

    base = fresh_base("causal_lm", dirs)
    plain = get_peft_model(copy.deepcopy(base), lora_config(_params(**kw), task_for("causal_lm")))
    for module in plain.modules():
        if isinstance(getattr(module, "lora_dropout", None), torch.nn.ModuleDict):
            for name, drop in module.lora_dropout.items():
                if isinstance(drop, torch.nn.Dropout):
                    module.lora_dropout[name] = HashDropout(drop.p)
    fused = build_method("lora", _params(**kw)).apply(base, task_for("causal_lm"))
    assert sum(isinstance(m, FusedLoraLinear) for m in fused.modules()) == 14  # 7 linears x 2 layers
    torch.manual_seed(1)
    with torch.no_grad():
        for (name, p), (name2, q) in zip(plain.named_parameters(), fused.named_parameters()):
            assert name == name2
            if "lora_B" in name:
                p.normal_(0, 0.1)
            q.copy_(p)
    return plain, fused


def _step(model, ids, autocast=False):
    model.train()
    model.zero_grad()
    torch.manual_seed(7)  # same dropout masks in both models
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(input_ids=ids).logits
    out.float().pow(2).mean().backward()
    return out.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


IDS = torch.tensor([[5, 9, 14, 3, 22, 7, 41, 8], [11, 4, 30, 2, 9, 17, 5, 26]])


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_equals_peft_in_fp32(dirs, dropout):
    """fp32: outputs and LoRA gradients equal peft's (merged weight or addmm: fp32 reassociation
    of sums over <= 64 terms, ~1e-7 relative; checked at 1e-5)."""
    plain, fused = _pair(dirs, dropout=dropout)
    (y1, g1), (y2, g2) = _step(plain, IDS), _step(fused, IDS)
    torch.testing.assert_close(y2, y1, atol=1e-5, rtol=1e-5)
    assert g1.keys() == g2.keys() and len(g1) == 28
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_bf16_autocast_is_as_close_to_fp32_as_peft(dirs, dropout):
    """Under bf16 autocast both round differently; the fused gradients are as close to the fp32
    ones as peft's (relative Frobenius error within 1.5x peft's; each ~1% at bf16's 8 bits)."""
    plain, fused = _pair(dirs, dropout=dropout)
    reference = copy.deepcopy(plain)
    _, exact = _step(reference, IDS)
    errors = []
    for model in (plain, fused):
        _, grads = _step(model, IDS, autocast=True)
        num = sum(float((grads[n] - exact[n]).norm() ** 2) for n in exact)
        errors.append((num / sum(float(exact[n].norm() ** 2) for n in exact)) ** 0.5)
    assert 0 < errors[1] < max(1.5 * errors[0], 1e-3) and errors[0] < 0.05


def test_eval_merge_disable_and_saved_adapter_are_peft_s(dirs, tmp_path):
    from peft import PeftModel

    plain, fused = _pair(dirs)
    with torch.no_grad():  # no grad: peft's own forward
        torch.testing.assert_close(fused.eval()(input_ids=IDS).logits, plain.eval()(input_ids=IDS).logits)
        with fused.disable_adapter():
            base_logits = fused(input_ids=IDS).logits
        with plain.disable_adapter():
            torch.testing.assert_close(base_logits, plain(input_ids=IDS).logits)
    fused.save_pretrained(tmp_path)
    assert "_custom_modules" not in (tmp_path / "adapter_config.json").read_text()
    loaded = PeftModel.from_pretrained(fresh_base("causal_lm", dirs), tmp_path)
    assert not any(isinstance(m, FusedLoraLinear) for m in loaded.modules())
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(input_ids=IDS).logits, plain(input_ids=IDS).logits)
        merged = fused.merge_and_unload()(input_ids=IDS).logits
    torch.testing.assert_close(merged, plain(input_ids=IDS).logits, atol=1e-5, rtol=1e-5)


def test_not_registered_over_quantized_or_subclassed_linears(dirs):
    class QuantLinear(torch.nn.Linear):
        pass

    model = fresh_base("causal_lm", dirs)
    config = lora_config(_params(), task_for("causal_lm"))
    model.model.layers[0].mlp.up_proj = QuantLinear(32, 64)
    assert register_fused_linear(config, model) is False and not config._custom_modules


@pytest.mark.slow  # inductor compiles C++ kernels (~10 s each on a 2-core CPU)
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_compiled_function_equals_eager(dropout):
    # runtime.compile traces LoraLinearFunction into the compiled blocks; torch 2.13's inductor dropped an
    # ``alpha=`` of ``add`` next to a matmul (the input gradient came out wrong by ~15 here, and one run crashed in
    # malloc), which a training-loss comparison missed: lora_B starts at zero, so the LoRA path's input gradient
    # is zero at the first step and small after. Here B is not zero and every gradient is compared.
    from lmforge.methods.lora.fused import LoraLinearFunction

    torch.manual_seed(0)
    x = torch.randn(96, 64, requires_grad=True)
    weight = torch.randn(48, 64) * 0.1
    a, b = (torch.randn(8, 64) * 0.1).requires_grad_(), (torch.randn(48, 8) * 0.1).requires_grad_()
    key = draw_key()

    def loss(x, a, b, key):
        y = LoraLinearFunction.apply(x, weight, None, a, b, 2.0, torch.float32, None,
                                     (dropout, key) if dropout else None)
        return (y * y).sum()

    results = []
    for fn in (loss, torch.compile(loss, fullgraph=True)):
        for t in (x, a, b):
            t.grad = None
        value = fn(x, a, b, key)
        value.backward()
        results.append([value.detach()] + [t.grad.clone() for t in (x, a, b)])
    # the same products, summed in another order by the compiled kernels: fp32 rounding, ~1e-7 relative per
    # term over sums of at most 96 terms -> well within 1e-5 of each tensor's largest entry
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5 * eager.abs().max().item())
