from lmforge.methods.prompt_tuning.config import PromptTuningParams
from lmforge.methods.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="prompt_tuning",
        params=PromptTuningParams,
        factory="lmforge.methods.prompt_tuning.method:PromptTuningMethod",
        trains="the embeddings of num_virtual_tokens soft-prompt tokens prepended to every input (+ the task head)",
        mergeable=False,
        can_pack=False,
        guidance="Tiniest add-on (a few thousand numbers per task); weaker than LoRA on small models, needs a higher lr.",
    )
)
