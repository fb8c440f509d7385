from lmforge.methods.freeze.config import FreezeParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="freeze",
        params=FreezeParams,
        factory="lmforge.methods.freeze.method:FreezeMethod",
        trains="the task head (feature extraction), optionally the last N transformer layers; "
        "head: pooled trains a pooling + MLP head, with cached encoder features",
        mergeable=True,
        guidance="Cheapest option for classification on an encoder; too weak to teach a causal LM new behaviour. "
        "head: pooled + cache_features makes every epoch after the first cost only the head (not mergeable).",
    )
)
