"""export_adapter: a plain peft folder that reloads over a fresh base with identical logits."""

from __future__ import annotations

import torch

from lmforge.export import export_adapter
from tests.unit.export.conftest import logits, lora_model


def test_adapter_reloads_with_plain_peft(tiny_llama_dir, tmp_path, ids):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    method, model = lora_model(tiny_llama_dir)
    out = export_adapter(method, model, tmp_path / "adapter")
    assert out == tmp_path / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.bin"))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, out).eval()
    assert torch.equal(logits(reloaded, ids), logits(model, ids))
    base_logits = logits(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32), ids)
    assert not torch.allclose(logits(model, ids), base_logits, atol=1e-3)  # the adapter changes something


def test_export_replaces_an_old_folder_whole(tiny_llama_dir, tmp_path):
    method, model = lora_model(tiny_llama_dir)
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "stale.txt").write_text("from an older export")
    export_adapter(method, model, out)
    assert not (out / "stale.txt").exists() and (out / "adapter_config.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no temp or .old folders left


class Failing:
    def save(self, model, out_dir):
        (out_dir / "partial.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")


def test_failed_save_leaves_no_folder(tmp_path):
    import pytest

    with pytest.raises(RuntimeError, match="disk full"):
        export_adapter(Failing(), torch.nn.Linear(1, 1), tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []
