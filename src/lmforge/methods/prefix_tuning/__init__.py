from lmforge.methods.prefix_tuning.config import PrefixTuningParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="prefix_tuning",
        params=PrefixTuningParams,
        factory="lmforge.methods.prefix_tuning.method:PrefixTuningMethod",
        trains="key/value prefixes of num_virtual_tokens positions in every attention layer (+ the task head)",
        mergeable=False,
        can_pack=False,
        guidance="More capacity than prompt tuning at the same token count; cannot be merged, costs KV-cache at inference.",
    )
)
