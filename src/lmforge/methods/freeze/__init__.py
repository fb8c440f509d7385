from lmforge.methods.freeze.config import FreezeParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="freeze",
        params=FreezeParams,
        factory="lmforge.methods.freeze.method:FreezeMethod",
        trains="the task head (feature extraction), optionally the last N transformer layers",
        mergeable=True,
        guidance="Cheapest option for classification on an encoder; too weak to teach a causal LM new behaviour.",
    )
)
