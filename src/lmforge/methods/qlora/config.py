from typing import Literal

from pydantic import Field

from lmforge.methods.lora.config import LoraParams


class QloraParams(LoraParams):
    """LoRA (every ``lora`` parameter) over a base quantized at load time by bitsandbytes."""

    bits: Literal[4, 8] = Field(default=4, description="Base weights in 4-bit (QLoRA) or 8-bit (LLM.int8).")
    quant_type: Literal["nf4", "fp4"] = Field(default="nf4", description="4-bit data type (ignored for 8-bit).")
    double_quant: bool = Field(default=True, description="Quantize the quantization constants too (4-bit only).")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="dtype of the dequantized matmuls; auto = bfloat16 on a bf16 GPU, else float32."
    )
