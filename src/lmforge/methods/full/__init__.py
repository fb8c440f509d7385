from lmforge.methods.full.config import FullParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="full",
        params=FullParams,
        factory="lmforge.methods.full.method:FullMethod",
        trains="every parameter of the model",
        mergeable=True,
        default_lr=1e-4,
        saves_adapter=False,
        guidance="Best quality per step when the model fits in memory ~4x over (weights, grads, AdamW state). "
        "Measured at its defaults (docs/methods.md): FiQA loss 3.48 -> 3.23, sentiment F1 0.52 -> 0.77.",
    )
)
