from lmforge.methods.lora.config import LoraParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="lora",
        params=LoraParams,
        factory="lmforge.methods.lora.method:LoraMethod",
        trains="low-rank update matrices beside the chosen linear layers (+ the task head)",
        mergeable=True,
        guidance="Default choice: near full-fine-tuning quality at a fraction of the memory; merges for export.",
    )
)
