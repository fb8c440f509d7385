"""LoRA dropout from hashed element indices: the specified bits on every CPU, nn.Dropout's distribution,
seeded by torch's generator, a 1-byte mask kept for backward (no dropped-out copy), off outside training."""

from __future__ import annotations

import pytest
import torch

from lmforge.methods import METHODS, build_method
from lmforge.methods.lora.dropout import draw_key, keep_mask, keep_threshold, reference_keep
from lmforge.methods.lora.fused import FusedLoraLinear
from tests.contracts.cases import fresh_base, task_for


@pytest.mark.parametrize("numel", [1, 7, 64, 1000, 65_537])
@pytest.mark.parametrize("p", [0.05, 0.5])
def test_mask_is_the_specified_hash_bit_for_bit(numel, p):
    """int32 arithmetic modulo 2**32 is exact: the tensor ops (vectorised body and scalar tail, one
    or more threads) give the bits of the Python-integer specification on this CPU, i.e. on all."""
    torch.manual_seed(numel)
    key = draw_key()
    got = keep_mask(numel, key, p)
    assert got.dtype == torch.uint8 and set(got.unique().tolist()) <= {0, 1}
    indices = sorted({*range(min(numel, 300)), *range(0, numel, 211), numel - 1})
    assert [got.tolist()[i] for i in indices] == reference_keep(indices, key.tolist(), p)


def test_keys_and_masks_follow_the_seeded_generator():
    torch.manual_seed(3)
    keys = [draw_key() for _ in range(3)]
    torch.manual_seed(3)
    first = [k.tolist() for k in keys]
    assert [draw_key().tolist() for _ in range(3)] == first  # run.seed (and a resumed generator state) fix them
    assert len({tuple(k) for k in first}) == 3 and all(a % 2 == 1 for a, _ in first)  # odd multiplier: a bijection
    assert not torch.equal(keep_mask(4096, keys[0], 0.5), keep_mask(4096, keys[1], 0.5))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drop_rate_and_independence_match_bernoulli(p):
    """1M elements: drop rate within 5 binomial standard deviations of p (threshold error <= 2**-33);
    masks of two keys, and neighbouring elements / rows of one mask, uncorrelated within 5 / sqrt(n)."""
    n = 1_000_000
    torch.manual_seed(11)
    m1 = 1 - keep_mask(n, draw_key(), p).double()
    m2 = 1 - keep_mask(n, draw_key(), p).double()
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(float(m1.mean()) - p) < 5 * sd and abs(float(m2.mean()) - p) < 5 * sd
    bound = 5 / n**0.5
    for a, b in ((m1, m2), (m1[:-1], m1[1:]), (m1[:-576], m1[576:])):  # across keys; next element; next row
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < bound


def test_threshold_stays_in_int32():
    assert keep_threshold(0.5) == 0 and keep_threshold(1e-12) == 2**31 - 1  # p ~ 0: keeps ~all, no overflow
    assert keep_mask(100_000, torch.tensor([12345, 678], dtype=torch.int32), 1e-12).all()


def _layer(tiny_llama_dir, dropout):
    params = METHODS["lora"].params.model_validate({"r": 4, "alpha": 8, "dropout": dropout})
    model = build_method("lora", params).apply(fresh_base("causal_lm", {"causal_lm": tiny_llama_dir}),
                                                 task_for("causal_lm"))
    layer = next(m for m in model.modules() if isinstance(m, FusedLoraLinear))
    with torch.no_grad():
        for b in layer.lora_B.values():
            b.weight.normal_(0, 0.1)
    return layer


def _saved(layer, x):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    return y, saved


def test_dropout_keeps_a_one_byte_mask_not_a_copy(tiny_llama_dir):
    """With dropout the fused layer saves x itself plus a byte mask (peft's layer: a dropped-out copy
    of x and torch's float mask)."""
    x = torch.randn(3, 5, 32, requires_grad=True)
    layer = _layer(tiny_llama_dir, 0.3).train()
    torch.manual_seed(0)
    y, with_dropout = _saved(layer, x)
    layer.lora_dropout["default"].p = 0.0
    _, without = _saved(layer, x)
    assert any(t.data_ptr() == x.data_ptr() for t in with_dropout)
    extra = sorted(t.numel() * t.element_size() for t in with_dropout if t is not None)
    base = sorted(t.numel() * t.element_size() for t in without if t is not None)
    assert sum(extra) - sum(base) == x.numel()  # exactly one byte per input element
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_dropout_only_while_training(tiny_llama_dir):
    """Evaluation mode with gradients on (e.g. an input-gradient probe) does not drop."""
    x = torch.randn(2, 4, 32)
    layer = _layer(tiny_llama_dir, 0.5)
    layer.eval()
    torch.manual_seed(0)
    y_eval = layer(x)
    layer.lora_dropout["default"].p = 0.0
    layer.train()
    torch.testing.assert_close(y_eval, layer(x))
    layer.lora_dropout["default"].p = 0.5
    assert not torch.allclose(layer(x), y_eval)  # training with p = 0.5 does drop
