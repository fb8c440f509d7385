from lmforge.methods.full.config import FullParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="full",
        params=FullParams,
        factory="lmforge.methods.full.method:FullMethod",
        trains="every parameter of the model",
        mergeable=True,
        guidance="Best quality per step when the model fits in memory ~4x over (weights, grads, AdamW state).",
    )
)
