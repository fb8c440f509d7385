from lmforge.methods.prompt_tuning.config import PromptTuningParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="prompt_tuning",
        params=PromptTuningParams,
        factory="lmforge.methods.prompt_tuning.method:PromptTuningMethod",
        trains="the embeddings of num_virtual_tokens soft-prompt tokens prepended to every input (+ the task head)",
        mergeable=False,
        default_lr=3e-1,
        can_pack=False,
        guidance="Tiniest add-on (8-12k numbers per task); needs a high lr (0.3). Measured at its defaults "
        "(docs/methods.md): FiQA loss 3.49 -> 3.35 (LoRA 3.22), sentiment F1 0.51 -> 0.63 (LoRA 0.80): clearly "
        "weaker on these small models.",
    )
)
