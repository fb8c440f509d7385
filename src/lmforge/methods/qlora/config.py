from typing import Literal

from pydantic import Field

from lmforge.methods.lora.config import LoraParams


class QloraParams(LoraParams):
    """LoRA (every ``lora`` parameter) over a base quantized at load time (bitsandbytes or torchao)."""

    backend: Literal["bitsandbytes", "torchao"] = Field(
        default="bitsandbytes",
        description="bitsandbytes: NF4/FP4 4-bit or LLM.int8; torchao: int8 / int4 weight-only base (installed with lmforge; CPU-checked).",
    )
    bits: Literal[4, 8] = Field(default=4, description="Base weights in 4-bit (QLoRA) or 8-bit (LLM.int8).")
    quant_type: Literal["nf4", "fp4"] = Field(default="nf4", description="bitsandbytes 4-bit data type.")
    double_quant: bool = Field(default=True, description="bitsandbytes 4-bit: quantize the quantization constants too.")
    group_size: int = Field(default=32, ge=8, description="torchao int4: weights per quantization group.")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="dtype of the dequantized matmuls; auto = bfloat16 on a bf16 GPU, else float32."
    )

    @property
    def frozen_bits(self) -> int:
        """The quantized base stores its weights in ``bits`` bits."""
        return self.bits
