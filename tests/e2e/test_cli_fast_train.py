"""The real CLI with the fast-training options: bf16 base, 8-bit AdamW, memory-mapped shards (+ packing)."""

from __future__ import annotations

import json

import torch

from tests.e2e.conftest import lora_config, run_cli

FAST = "{max_steps: 6, batch_size: 4, lr: 0.01, eval_every: 3, log_every: 2, optimizer: adamw_8bit}"
FAST_RUNTIME = "{precision: bf16, memory: {shards: auto}}"


def test_bf16_base_8bit_optimizer_and_shards_run_end_to_end(tmp_path, tiny_llama_dir, qa_file):
    cfg = lora_config(tmp_path, tiny_llama_dir, qa_file, train=FAST, runtime=FAST_RUNTIME)
    text = cfg.read_text().replace("  max_length: 64\n", "  max_length: 64\n  packing: true\n")
    cfg.write_text(text.replace("  format: instruction\n", ""))  # told from the data (columns mapped)
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    assert "data.format: instruction, told from the data (" in proc.stdout
    assert "format: instruction" in (run / "config.yaml").read_text()  # recorded with the run
    assert "memory-mapped from" in proc.stdout
    meta = json.loads((run / "shards" / "meta.json").read_text())
    assert "lengths" in meta["ragged_fields"] and meta["tokens"] > 0  # packed rows
    results = json.loads((run / "results.json").read_text())
    assert results["after"]["eval_loss"] < results["before"]["eval_loss"]
    parity = json.loads((run / "export" / "merged" / "parity.json").read_text())
    assert parity["passed"]

    # the exported adapter over the ORIGINAL fp32 base equals the merged export
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run / "export" / "merged")
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), run / "export" / "adapter")
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-4, rtol=1e-4)

    resumed = run_cli("train", str(cfg), "--resume")  # reuses the shards; 8-bit optimizer state reloads
    assert resumed.returncode == 0, resumed.stderr[-3000:]
