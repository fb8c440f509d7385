"""bitsandbytes workaround: keep 4-bit CPU weights in their trainable layout.

Upstream bug (bitsandbytes 0.50.2, seen with torch 2.13 CPU): on a CPU with AVX512-BF16,
``bnb.nn.Linear4bit.forward`` run in eval mode on an input without grad (an evaluation,
``generate()``, a sanity forward) repacks ``weight.data`` in place into an inference-only layout
(``quant_state.packing_format_for_cpu``). Every later forward then goes through
``bitsandbytes::gemv_4bit``, which has no autograd kernel: LoRA gradients after the first
evaluation are silently wrong or absent (only a "gemv_4bit ... autograd kernel was not
registered" warning). Setting the public per-layer flag ``support_avx512bf16_for_cpu = False``
before any forward keeps the weight in the standard layout, at the cost of the faster bf16
inference kernel.

Delete this module (and its call sites in ``methods/qlora``) when
``tests/invariants/test_qlora_grads.py::test_upstream_repack_bug_still_present`` fails: that test
forces the upstream default and fails once gradients after an eval pass come out right.
"""

from __future__ import annotations

from torch import nn


def keep_4bit_weights_trainable(model: nn.Module) -> int:
    """Turn off the CPU inference repack on every ``bnb.nn.Linear4bit`` inside ``model``.

    Must run before the model's first forward. Returns how many layers were changed (0 when
    bitsandbytes is not installed or the model has no 4-bit layers). Raises RuntimeError when a
    layer was already repacked (a forward ran first), because its gradients would be wrong.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    changed = 0
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = getattr(module.weight, "quant_state", None)
            if getattr(state, "packing_format_for_cpu", False):
                raise RuntimeError(
                    f"4-bit layer '{name}' was already repacked for CPU inference by an earlier "
                    "forward; apply keep_4bit_weights_trainable before any forward"
                )
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed
