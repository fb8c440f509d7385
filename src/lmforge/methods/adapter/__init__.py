from lmforge.methods.adapter.config import AdapterParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="adapter",
        params=AdapterParams,
        factory="lmforge.methods.adapter.method:AdapterMethod",
        trains="small bottleneck layers after each block's MLP (pfeiffer) or attention and MLP (houlsby) (+ the task head)",
        mergeable=False,
        default_lr=3e-3,
        guidance="Many small task add-ons over one frozen base, served unmerged. Measured: best FiQA loss with full "
        "(3.27, 1.3M params) but stayed at the majority class on sentiment in 100 steps (needs longer or a higher lr).",
        extras={"needs": "linear layers"},
    )
)
