"""DPO / SimPO / ORPO objectives on the tiny Llama: encoding, reference handling, a short training run."""

import math

import pytest
import torch

from lmforge.config.schema import RuntimeConfig, TrainConfig
from lmforge.data.preference import collate_pairs, encode_pairs
from lmforge.evaluate.run import evaluate
from lmforge.methods import build_method, get_method_spec
from lmforge.train import train
from tests.unit.objectives.preference_cases import PAIRS, PREF_DATA, model, objective, tokenizer


def test_encode_pairs_labels_only_the_answer_and_end_of_turn(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    features = encode_pairs(PAIRS, tok, PREF_DATA)
    assert len(features) == len(PAIRS)
    first = features[0]
    chosen = [t for t in first["chosen_labels"] if t != -100]
    assert tok.decode(chosen) == "paris <|im_end|>"
    rejected = [t for t in first["rejected_labels"] if t != -100]
    assert tok.decode(rejected) == "the bank <|im_end|>"
    # same prompt tokens on both sides, and none of them trained
    n_prompt = first["chosen_labels"].index(chosen[0])
    assert first["chosen_ids"][:n_prompt] == first["rejected_ids"][:n_prompt]
    assert len({f["uid"] for f in features}) == len(features)


def test_collate_pairs_stacks_chosen_then_rejected(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    features = encode_pairs(PAIRS[:2], tok, PREF_DATA)
    batch = collate_pairs(features, tok.pad_token_id)
    assert batch["input_ids"].shape[0] == 4 and batch["uid"].shape == (2,)
    assert batch["input_ids"][0, : len(features[0]["chosen_ids"])].tolist() == features[0]["chosen_ids"]
    assert batch["input_ids"][2, : len(features[0]["rejected_ids"])].tolist() == features[0]["rejected_ids"]
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_truncated_away_pairs_are_dropped(tiny_llama_dir):
    from lmforge.config.schema import DataConfig
    from lmforge.errors import UserError

    tok = tokenizer(tiny_llama_dir)
    short = DataConfig(format="preference", train="x", max_length=8)
    with pytest.raises(UserError, match="no example left"):
        encode_pairs(PAIRS[:1], tok, short)


@pytest.mark.parametrize("method_name", ["full", "lora"])
def test_dpo_short_training_run_improves_train_pairs(tiny_llama_dir, tmp_path, method_name):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("dpo", beta=0.5)
    method = build_method(method_name, get_method_spec(method_name).params(**({"r": 8} if method_name == "lora" else {})))
    net = method.apply(model(tiny_llama_dir, obj), obj.task_info(None))
    obj.bind(net, tok, lambda: method.reference(net))
    features = obj.encode(PAIRS, tok, PREF_DATA)
    collate = lambda f: obj.collate(f, tok)  # noqa: E731
    before = evaluate(obj, net, features, collate, batch_size=4)
    assert before["eval_loss"] == pytest.approx(math.log(2), abs=1e-5)
    cfg = TrainConfig(max_steps=12, batch_size=2, lr=5e-3 if method_name == "lora" else 2e-3, warmup_ratio=0.0,
                      scheduler="constant", tensorboard=False, log_every=4, eval_every=12)
    result = train(net, obj, features, train_cfg=cfg, runtime_cfg=RuntimeConfig(precision="fp32", device="cpu"),
                   run_dir=tmp_path, collate=collate,
                   evaluate_fn=lambda m: evaluate(obj, m, features, collate, 4), seed=0,
                   best_metric="eval_loss", metric_mode="min")
    after = evaluate(obj, net, features, collate, batch_size=4)
    assert result.steps == 12
    assert after["eval_loss"] < before["eval_loss"] - 0.05
    assert after["reward_accuracy"] >= 0.75 and after["reward_margin"] > 0
    # reward = beta * (policy - reference): the chosen log-prob rose relative to the rejected one
    assert after["logps_chosen"] - after["logps_rejected"] > before["logps_chosen"] - before["logps_rejected"]


def test_reference_cache_computes_each_example_once(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("dpo", precompute_reference=True)
    net = model(tiny_llama_dir, obj)
    obj.bind(net, tok)
    batch = obj.collate(obj.encode(PAIRS[:2], tok, PREF_DATA), tok)
    first = obj.pair_stats(net, batch)
    assert len(obj.reference.cache) == 4  # 2 pairs x (chosen, rejected)
    with torch.no_grad():  # change the policy: the cached reference must not follow
        for p in net.parameters():
            p.add_(0.01)
    second = obj.pair_stats(net, batch)
    assert torch.equal(first.ref_chosen, second.ref_chosen)
    assert not torch.allclose(first.policy_chosen, second.policy_chosen)


def test_frozen_reference_ignores_training_for_full_models(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("dpo", precompute_reference=False)
    net = model(tiny_llama_dir, obj)
    obj.bind(net, tok)
    batch = obj.collate(obj.encode(PAIRS[:2], tok, PREF_DATA), tok)
    before = obj.pair_stats(net, batch)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.05)
    after = obj.pair_stats(net, batch)
    assert torch.allclose(before.ref_chosen, after.ref_chosen)
    assert not all(p.requires_grad for p in obj.reference.policy.frozen.parameters())


@pytest.mark.parametrize("name", ["simpo", "orpo"])
def test_reference_free_objectives_have_no_reference(tiny_llama_dir, name):
    tok = tokenizer(tiny_llama_dir)
    obj = objective(name)
    net = model(tiny_llama_dir, obj)
    obj.bind(net, tok)
    assert obj.reference is None
    out = obj.loss(net, obj.collate(obj.encode(PAIRS, tok, PREF_DATA), tok))
    assert out.count == len(PAIRS) and torch.isfinite(out.total)
    out.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
