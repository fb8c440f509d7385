from lmforge.methods.adapter.config import AdapterParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="adapter",
        params=AdapterParams,
        factory="lmforge.methods.adapter.method:AdapterMethod",
        trains="small bottleneck layers after each block's MLP (pfeiffer) or attention and MLP (houlsby) (+ the task head)",
        mergeable=False,
        guidance="Many small task add-ons over one frozen base; adds latency at inference (served unmerged).",
        extras={"needs": "linear layers"},
    )
)
