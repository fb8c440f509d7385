"""A lean decode step for Llama-family causal LMs on CPU: the same math as transformers' forward, fewer ops.

Why it exists (a deviation from "the decode loop uses only the model's public forward"): decoding one token per
row at these model sizes is bound by per-step overhead as much as by the weights. Measured on the 2-core AMD EPYC
(Zen 5) of benchmarks/RESULTS.md, SmolLM2-135M with bf16 weights, one row: transformers' forward took 20.7 ms a
token, 15.7 ms with the server's packed weights (:mod:`lmforge.serve.packed`), whose linear layers alone take
7.2-7.4 ms; the rest was transformers' per-layer Python (mask building, cache bookkeeping, casts, rotary per
layer: ~60 ops a layer). This step does ~25 ops a layer: cos/sin once per step for all layers, q and k rotated
in one op, keys and values written into preallocated fp32 buffers (transformers' ``DynamicCache`` concatenates
the whole cache every step), one query's attention as two 3-D batched matmuls in fp32 (bf16 attention on CPU was 3-6x
slower than fp32 at these sizes), hook-free modules called through ``forward``. With the server's fused
projections (:mod:`lmforge.serve.linears`) a step takes 10.3-11.9 ms there.

What it is not: another model. It calls the model's own leaf modules for every weight (embedding, the q/k/v/o
and gate/up/down projections, the output head, the activation), so PEFT LoRA wrappers, lmforge's bottleneck
adapters (forward hooks on projections), int8 and packed layers all take part as they would in the forward. It
reads the norms' weights and epsilons and the rotary module's frequencies. It runs only where that is the whole
math: :func:`lean_decoder` checks that the model, its decoder layers, attention, MLP, norms and rotary embedding
are transformers' own classes for a supported architecture (Llama, Mistral, Qwen2, Qwen3) with no forward hooks
on the modules it goes around, no sliding window, a rotary type whose frequencies do not depend on the length,
on CPU, with a ``DynamicCache`` from the prefill. Anything else decodes through the model's forward as before.
The prefill always runs through the model's forward (exact, and the one place the whole prompt is seen).

Numerics: the same operations as transformers' Llama code (RMSNorm in fp32 then cast, cos/sin in fp32 then cast,
rotate-half rotary, softmax attention with the module's ``scaling``), grouped differently (``F.rms_norm``, the
attention in fp32 where transformers keeps bf16 keys and values in bf16), so the logits agree to rounding, not bit
for bit: tests/unit/model/test_fastdecode.py compares them with the forward's on tiny models of each
architecture, in fp32 and bf16, with left padding and rows leaving the batch.

Memory: the key/value buffers are fp32 whatever the weights' dtype, twice the bytes of transformers' bf16 cache for
a bf16 model (SmolLM2-135M: 45 KiB a token a row; an 8B Llama-3: 256 KiB), traded for the speed of fp32 attention
on CPU; they start at the prompt plus at most GROW positions and grow as the rows do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# model_type -> the transformers module its classes must come from
SUPPORTED = {"llama": "transformers.models.llama.", "mistral": "transformers.models.mistral.",
             "qwen2": "transformers.models.qwen2.", "qwen3": "transformers.models.qwen3."}
# rotary types whose inv_freq does not change with the sequence length (dynamic / longrope rescale per call)
STATIC_ROPE = {"default", "linear", "llama3", "yarn"}
# the key/value buffers hold at most this many positions beyond the prompt at first and grow by as many when full
# (a step writes in place; growing copies the cache once per GROW tokens, not every token as concatenating would)
GROW = 256


class LeanDecoder:
    """Decode state for one batch: ``start`` after the prefill, then ``step`` per token, ``keep`` when rows leave."""

    def __init__(self, causal_lm: torch.nn.Module):
        inner = causal_lm.model
        self.embed, self.head, self.final_norm = inner.embed_tokens, causal_lm.lm_head, inner.norm
        self.layers = list(inner.layers)
        attn = self.layers[0].self_attn
        self.heads = causal_lm.config.num_attention_heads
        self.kv_heads = causal_lm.config.num_key_value_heads
        self.head_dim = attn.head_dim
        self.rotary = inner.rotary_emb
        half = self.head_dim // 2
        self.sign = torch.cat([torch.full((half,), -1.0), torch.ones(half)])
        self.plans = [_LayerPlan(layer) for layer in self.layers]
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0

    def start(self, cache, extra: int) -> None:
        """Copy the prefill's ``DynamicCache`` into fp32 buffers with room for ``extra`` more positions (at most
        GROW)."""
        self.keys, self.values = [], []
        for layer in cache.layers:
            k, v = layer.keys, layer.values
            self.length = k.shape[2]
            shape = (k.shape[0], k.shape[1], self.length + min(max(1, extra), GROW), k.shape[3])
            kb, vb = k.new_empty(shape, dtype=torch.float32), v.new_empty(shape, dtype=torch.float32)
            kb[:, :, :self.length], vb[:, :, :self.length] = k, v
            self.keys.append(kb)
            self.values.append(vb)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the rows ``index`` (finished rows leave the batch)."""
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One token per row: ``tokens`` [rows], ``positions`` [rows, 1] (rotary positions), ``mask`` [rows, length
        + 1] (1 = attend; the cache's columns then the new token). Returns the next-token logits [rows, vocab] fp32."""
        if self.length == self.keys[0].shape[2]:
            self._grow()
        rows, t = tokens.shape[0], self.length
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        x = self.embed(tokens[:, None])
        dtype = x.dtype
        # transformers' rotary: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) = roll(x) * sign
        freqs = positions.float() * self.rotary.inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)[:, None, :]  # rows, 1, head_dim
        scale = self.rotary.attention_scaling
        cos, sin = (angles.cos() * scale).to(dtype), (angles.sin() * scale * self.sign).to(dtype)
        blocked = None if bool(mask.all()) else ~mask.bool()[:, None, None, :]
        for i, (layer, plan) in enumerate(zip(self.layers, self.plans)):
            attn = layer.self_attn
            h = _rms(x, layer.input_layernorm)
            q, k, v = plan.qkv(h)
            q, k, v = q.view(rows, heads, dim), k.view(rows, kv_heads, dim), v.view(rows, kv_heads, dim)
            if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head before the rotary
                q, k = _rms(q, attn.q_norm), _rms(k, attn.k_norm)
            qk = torch.cat((q, k), dim=1)  # both rotated in one go
            qk = qk * cos + qk.roll(dim // 2, -1) * sin
            self.keys[i][:, :, t] = qk[:, heads:]
            self.values[i][:, :, t] = v
            o = _attend(qk[:, :heads], self.keys[i][:, :, :t + 1], self.values[i][:, :, :t + 1], blocked, attn.scaling)
            x = x + plan.o_proj(o.view(rows, 1, heads * dim).to(dtype))
            h = _rms(x, layer.post_attention_layernorm)
            gate, up = plan.gate_up(h)
            x = x + plan.down_proj(plan.act(gate) * up)
        self.length = t + 1
        return self.head(_rms(x, self.final_norm))[:, -1, :].float()

    def _grow(self) -> None:
        self.keys = [torch.cat([k, k.new_empty(k.shape[0], k.shape[1], GROW, k.shape[3])], dim=2) for k in self.keys]
        self.values = [torch.cat([v, v.new_empty(v.shape[0], v.shape[1], GROW, v.shape[3])], dim=2)
                       for v in self.values]


class _LayerPlan:
    """How the step calls one decoder layer's projections. A module without hooks is called through its ``forward``
    (what calling it would do, minus ``nn.Module.__call__``'s bookkeeping, ~2 us a call); projections fused by the
    server (``lmforge.serve.linears``: slices of one shared product, recognised by their ``shared`` layer) are
    computed once and split here instead of through each slice."""

    def __init__(self, layer: torch.nn.Module):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _group([attn.q_proj, attn.k_proj, attn.v_proj])
        self.gate_up = _group([mlp.gate_proj, mlp.up_proj])
        self.o_proj, self.down_proj, self.act = _direct(attn.o_proj), _direct(mlp.down_proj), _direct(mlp.act_fn)


def _direct(module: torch.nn.Module):
    return module if _hooked(module) else module.forward


def _hooked(module: torch.nn.Module) -> bool:
    """True when ``module`` has a forward (pre-)hook that could change or observe what it computes.

    transformers 5 installs an output-capturing hook on every decoder layer and attention module the first time a
    forward asks for ``output_hidden_states`` / ``output_attentions`` (the server's drift statistics do) and leaves
    it there; it returns at once unless that forward's own capture is active (a context variable the lean step
    never sets), so skipping it changes nothing. Without this exception one request with drift statistics turned
    the lean step off for good (measured: 0.40 -> 0.50 s per 32-token request)."""
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return any(not (getattr(h, "__module__", "") == "transformers.utils.output_capturing"
                    and getattr(h, "__name__", "") == "output_capturing_hook") for h in hooks)


def _group(parts: list[torch.nn.Module]):
    """A callable h -> (each part's output)."""
    shared = getattr(parts[0], "shared", None)
    slices = [(getattr(p, "start", None), getattr(p, "stop", None)) for p in parts]
    if (shared is not None and all(getattr(p, "shared", None) is shared for p in parts)
            and all(_direct(p) is not p for p in parts)
            and [a for a, _ in slices[1:]] == [b for _, b in slices[:-1]] and slices[0][0] == 0):
        sizes, fused = [b - a for a, b in slices], _direct(shared.linear)
        return lambda h: fused(h).split(sizes, dim=-1)
    calls = [_direct(p) for p in parts]
    return lambda h: [call(h) for call in calls]


def _rms(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """transformers' Llama RMSNorm: normalized in fp32, cast back, times the weight."""
    return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon).to(x.dtype)


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, blocked: torch.Tensor | None,
            scale: float) -> torch.Tensor:
    """Softmax attention of one query per row over the cache, in fp32: q [rows, heads, d], keys and values
    [rows, kv_heads, length, d], ``blocked`` [rows, 1, 1, length] (True = padding) or None; returns
    [rows, kv_heads, heads / kv_heads, d]. Query head j reads key/value head j // (heads / kv_heads), as
    transformers' ``repeat_kv``."""
    rows, heads, dim = q.shape
    kv_heads, length = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    # 3-D batched matmuls over (row, key/value head): the buffers' first two dims merge into one without a copy
    scores = torch.bmm(q.float().reshape(rows * kv_heads, group, dim),
                       keys.view(rows * kv_heads, length, dim).transpose(1, 2)).mul_(scale)
    if blocked is not None:
        scores = scores.view(rows, kv_heads, group, length).masked_fill_(blocked, float("-inf")).view_as(scores)
    return torch.bmm(scores.softmax(-1), values.view(rows * kv_heads, length, dim)).view(rows, kv_heads, group, dim)


def lean_decoder(model: torch.nn.Module, cache) -> LeanDecoder | None:
    """A :class:`LeanDecoder` for ``model`` (possibly PEFT-wrapped) continuing from the prefill's ``cache`` when the
    lean step is its whole math, else None (see the module doc for the conditions)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    if type(cache) is not DynamicCache or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    config = getattr(base, "config", None)
    prefix = SUPPORTED.get(getattr(config, "model_type", None))
    inner = getattr(base, "model", None)
    if prefix is None or inner is None or not hasattr(base, "lm_head"):
        return None
    try:
        if next(base.parameters()).device.type != "cpu":
            return None
    except StopIteration:
        return None
    if getattr(config, "sliding_window", None) is not None and (
            config.model_type == "mistral" or getattr(config, "use_sliding_window", False)):
        return None
    rotary = getattr(inner, "rotary_emb", None)
    if getattr(rotary, "rope_type", None) not in STATIC_ROPE:
        return None
    registry = torch.nn.modules.module  # hooks registered for every module would be skipped with the modules
    if getattr(registry, "_global_forward_hooks", None) or getattr(registry, "_global_forward_pre_hooks", None):
        return None
    around = [base, inner, inner.norm, rotary]
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if getattr(attn, "sliding_window", None) is not None:
            return None
        around += [layer, attn, mlp, layer.input_layernorm, layer.post_attention_layernorm]
        around += [attn.q_norm, attn.k_norm] if hasattr(attn, "q_norm") else []
    for module in around:
        if not type(module).__module__.startswith(prefix) or _hooked(module):
            return None
    return LeanDecoder(base)
