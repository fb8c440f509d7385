from lmforge.methods.lora.config import LoraParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="lora",
        params=LoraParams,
        factory="lmforge.methods.lora.method:LoraMethod",
        trains="low-rank update matrices beside the chosen linear layers (+ the task head)",
        mergeable=True,
        default_lr=1e-3,
        classification_lr=5e-4,
        guidance="Default choice: near full-fine-tuning quality, merges for export. Measured: sentiment F1 0.75 vs full 0.76 "
        "with 3% of the parameters trained; with dropout its peak RSS on SmolLM2 was not below full fine-tuning.",
    )
)
