"""Invariant: the exported merged model == the unmerged trained model (fp32, atol 1e-4)."""

from __future__ import annotations

import torch

from lmforge.export import export_adapter, export_merged


def test_merged_export_matches_unmerged_adapter(tiny_llama_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo

    method = build_method("lora", METHODS["lora"].params(r=4, alpha=16, dropout=0.0))
    model = method.apply(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32), TaskInfo("causal_lm"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.eval()
    ids = torch.randint(4, 100, (2, 12))
    export_adapter(method, model, tmp_path / "adapter")
    export_merged(method, model, AutoTokenizer.from_pretrained(tiny_llama_dir), tmp_path / "merged", "float32")
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
        base_logits = base(input_ids=ids).logits
        adapter = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()(input_ids=ids).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=0)
    torch.testing.assert_close(adapter, unmerged, atol=0, rtol=0)
    assert (unmerged - base_logits).abs().max() > 1e-2  # the adapter matters, so the check has teeth
