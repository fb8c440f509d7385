"""Preference-learning invariants: what holds for every preference objective and method.

- DPO loss at step 0 (policy == reference) is log 2, for every method;
- a disabled adapter (the peft methods' reference hook) reproduces the base model's log-probs exactly;
- a frozen copy (every other method's reference) does not follow training;
- the completion log-prob sums exactly the completion tokens: prompt and pad never count
  (tiny ChatML tokenizer here; SmolLM2's real template in the slow test);
- GRPO advantages are zero when every reward in a group is equal;
- contract: every preference objective runs (loss, backward, non-zero grads) with every method.
"""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.config.schema import DataConfig
from lmforge.data.preference import collate_pairs, encode_pairs
from lmforge.methods import METHODS, build_method
from lmforge.objectives import OBJECTIVES
from lmforge.objectives.preference import Reference, sequence_logps, token_logps
from lmforge.objectives.grpo.objective import group_advantages
from tests.contracts.cases import CONTRACT_PARAMS
from tests.unit.objectives.preference_cases import PAIRS, PREF_DATA, model, objective, tokenizer

PREFERENCE_OBJECTIVES = sorted(n for n, s in OBJECTIVES.items() if "pairs" in s.kinds or n == "grpo")


def _method(name: str):
    spec = METHODS[name]
    return build_method(name, spec.params.model_validate(CONTRACT_PARAMS.get(name, {})))


def _applied(model_dir, obj, method_name):
    method = _method(method_name)
    base = model(model_dir, obj)
    from lmforge.model import load_model
    from lmforge.config.schema import ModelConfig

    if method.load_kwargs():  # e.g. a quantized base
        torch.manual_seed(0)
        base = load_model(ModelConfig(name=str(model_dir)), obj.task_info(None), **method.load_kwargs())
    return method.apply(base, obj.task_info(None))


def _reference(method_name: str, net):
    """The method's reference hook for ``net``, as the pipeline hands it to ``Objective.bind``."""
    return lambda: _method(method_name).reference(net)


def _methods_for(objective_name: str) -> list[str]:
    return sorted(n for n, s in METHODS.items() if s.objectives is None or objective_name in s.objectives)


@pytest.mark.parametrize("method_name", _methods_for("dpo"))
def test_dpo_loss_at_step_zero_is_log2(tiny_llama_dir, method_name):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("dpo", precompute_reference=False)
    net = _applied(tiny_llama_dir, obj, method_name)
    obj.bind(net, tok, _reference(method_name, net))
    net.train()
    out = obj.loss(net, obj.collate(obj.encode(PAIRS, tok, PREF_DATA), tok))
    assert out.count == len(PAIRS)
    if _is_prompt_learning(net):  # virtual tokens change the output from step 0: policy != reference
        assert torch.isfinite(out.total)
        return
    assert (out.total / out.count).item() == pytest.approx(math.log(2), abs=1e-5)


def _is_prompt_learning(net) -> bool:
    config = getattr(net, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def test_disabled_adapter_reproduces_reference_logps_exactly(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("dpo")
    batch = obj.collate(obj.encode(PAIRS, tok, PREF_DATA), tok)
    base = model(tiny_llama_dir, obj).eval()
    with torch.no_grad():
        expected, _ = sequence_logps(base, batch["input_ids"], batch["attention_mask"], batch["labels"])
    lora = _applied(tiny_llama_dir, obj, "lora").eval()
    with torch.no_grad():  # make the adapter matter (a fresh LoRA B is zero)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
        policy, _ = sequence_logps(lora, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert not torch.allclose(policy, expected)
    reference = Reference()
    reference.bind(lora, _reference("lora", lora))
    assert type(reference.policy).__name__ == "AdapterDisabled"  # no second copy of the weights
    assert torch.equal(reference.sequence_logps(lora, batch), expected)


@pytest.mark.parametrize("method_name", ["full", "freeze", "adapter"])
def test_frozen_copy_reference_does_not_follow_training(tiny_llama_dir, method_name):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("dpo")
    batch = obj.collate(obj.encode(PAIRS, tok, PREF_DATA), tok)
    net = _applied(tiny_llama_dir, obj, method_name).eval()
    with torch.no_grad():
        expected, _ = sequence_logps(net, batch["input_ids"], batch["attention_mask"], batch["labels"])
    reference = Reference()
    reference.bind(net, _reference(method_name, net))
    with torch.no_grad():  # "training" changes every trainable weight after bind
        for p in (p for p in net.parameters() if p.requires_grad):
            p.add_(0.5)
        moved, _ = sequence_logps(net, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert not torch.allclose(moved, expected)
    assert torch.equal(reference.sequence_logps(net, batch), expected)


def test_completion_logp_excludes_prompt_and_pad(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    net = model(tiny_llama_dir, objective("dpo")).eval()
    features = encode_pairs(PAIRS, tok, PREF_DATA)
    batch = collate_pairs(features, tok.pad_token_id)
    with torch.no_grad():
        sums, counts = sequence_logps(net, batch["input_ids"], batch["attention_mask"], batch["labels"])
        rows = [(f["chosen_ids"], f["chosen_labels"]) for f in features] + [
            (f["rejected_ids"], f["rejected_labels"]) for f in features]
        for i, (ids, labels) in enumerate(rows):  # each row alone, no padding, by hand from full logits
            logits = net(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            positions = [t for t in range(len(ids) - 1) if labels[t + 1] != -100]
            manual = sum(logits[t, ids[t + 1]].item() for t in positions)
            assert counts[i].item() == len(positions) == sum(1 for x in labels if x != -100)
            assert sums[i].item() == pytest.approx(manual, abs=1e-4)
        # the pad token's id is irrelevant, and so is every prompt token's label-free position
        other = collate_pairs(features, 7)
        again, _ = sequence_logps(net, other["input_ids"], other["attention_mask"], other["labels"])
        assert torch.allclose(again, sums, atol=1e-5)


def test_chunked_and_full_logits_paths_agree(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    net = model(tiny_llama_dir, objective("dpo")).eval()
    batch = collate_pairs(encode_pairs(PAIRS, tok, PREF_DATA), tok.pad_token_id)
    with torch.no_grad():
        chunked, mask = token_logps(net, batch["input_ids"], batch["attention_mask"], batch["labels"], chunk_size=3)
        logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
    targets = batch["labels"][:, 1:].clamp(min=0)
    full = logits[:, :-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    assert torch.allclose(chunked, full, atol=1e-5)
    assert (chunked[~mask] == 0).all()


def test_grpo_advantages_zero_for_equal_rewards():
    rewards = torch.tensor([[0.5, 0.5, 0.5, 0.5], [3.0, 3.0, 3.0, 3.0], [0.0, 1.0, 0.0, 1.0]])
    adv = group_advantages(rewards)
    assert torch.equal(adv[:2], torch.zeros(2, 4))
    assert adv[2].sum().abs() < 1e-5 and (adv[2] != 0).all()


def _contract_cases():
    for name in PREFERENCE_OBJECTIVES:
        for method_name in _methods_for(name):
            yield pytest.param(name, method_name, id=f"{name}-{method_name}")


GRPO_PROMPTS = [{"instruction": "what is the capital of france", "input": "", "output": "paris", "system": None},
                {"instruction": "hello", "input": "", "output": "hi", "system": None}]


@pytest.mark.parametrize(("objective_name", "method_name"), list(_contract_cases()))
def test_every_preference_objective_trains_with_every_method(tiny_llama_dir, objective_name, method_name, tmp_path):
    tok = tokenizer(tiny_llama_dir)
    if objective_name == "grpo":
        obj = objective("grpo", reward="lmforge.objectives.grpo.rewards:contains_answer", group_size=2, max_new_tokens=4)
        records, data = GRPO_PROMPTS, DataConfig(format="instruction", train="x", max_length=64)
    else:
        obj, records, data = objective(objective_name), PAIRS[:2], PREF_DATA
    net = _applied(tiny_llama_dir, obj, method_name)
    obj.bind(net, tok, _reference(method_name, net))
    batch = obj.collate(obj.encode(records, tok, data), tok)
    net.train()
    torch.manual_seed(0)
    out = obj.loss(net, batch)
    assert out.count == obj.count(batch) > 0
    assert torch.isfinite(out.total)
    out.total.backward()
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert trainable and all(p.grad is None or torch.isfinite(p.grad).all() for p in trainable)
    if objective_name != "grpo":  # GRPO's gradient is zero when a group's rewards tie (see above)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    with torch.no_grad():
        result = obj.eval_step(net, batch)
    assert result.count > 0 and math.isfinite(result.loss_total)
