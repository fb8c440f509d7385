"""GRPO: advantages, clipping, completion masks, reward loading, and a loss / eval pass on the tiny Llama."""

import pytest
import torch
from pydantic import ValidationError

from lmforge.config.schema import DataConfig
from lmforge.errors import UserError
from lmforge.objectives.grpo.config import GRPOParams
from lmforge.objectives.grpo.objective import clipped_objective, completion_mask, group_advantages
from lmforge.objectives.grpo.rewards import contains_answer, exact_match, load_reward_function, short_answer
from tests.unit.objectives.preference_cases import model, objective, tokenizer

PROMPTS = [
    {"instruction": "what is the capital of france", "input": "", "output": "paris", "system": None},
    {"instruction": "hello", "input": "", "output": "hi", "system": None},
]
INSTRUCTIONS = DataConfig(format="instruction", train="x.jsonl", max_length=64)


def test_group_advantages_normalise_within_groups():
    adv = group_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]))
    assert torch.equal(adv[0], torch.zeros(3))
    assert adv[1].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-3)


def test_clipped_objective_clips_only_beyond_epsilon():
    old = torch.zeros(1, 2)
    logps = torch.log(torch.tensor([[1.5, 0.9]]))
    loss = clipped_objective(logps, old, torch.tensor([1.0]), clip=0.2)
    assert loss.tolist()[0] == pytest.approx([-1.2, -0.9])  # ratio 1.5 clipped to 1.2; 0.9 kept
    loss_neg = clipped_objective(logps, old, torch.tensor([-1.0]), clip=0.2)
    assert loss_neg.tolist()[0] == pytest.approx([1.5, 0.9])  # pessimistic side for negative advantages


def test_completion_mask_stops_after_first_stop_token():
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 7, 2, 0], [5, 6, 7, 8, 9]])
    mask = completion_mask(ids, [2])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_builtin_rewards():
    assert exact_match("q", "The Paris.", "paris") == 1.0
    assert exact_match("q", "paris france", "paris") == 0.0
    assert contains_answer("q", "it is Paris, France", "paris") == 1.0
    assert short_answer("q", "Paris.", "paris") == 2.0
    assert short_answer("q", "the capital city of france is paris", "paris") == 1.0
    assert short_answer("q", "Lyon", "paris") == 1.0 and short_answer("q", "", "paris") == 0.0


def test_reward_function_from_file_and_module(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text("def score(prompt, completion, reference):\n    return len(completion)\n")
    assert load_reward_function(f"{path}:score")("p", "abc", "") == 3
    assert load_reward_function("lmforge.objectives.grpo.rewards:exact_match") is exact_match
    with pytest.raises(UserError, match="not found"):
        load_reward_function(f"{tmp_path / 'none.py'}:score")
    with pytest.raises(UserError, match="not a function"):
        load_reward_function(f"{path}:missing")
    with pytest.raises(UserError, match="cannot import"):
        load_reward_function("no_such_module_xyz:f")


def test_params_need_exactly_one_reward_source():
    with pytest.raises(ValidationError, match="exactly one"):
        GRPOParams()
    with pytest.raises(ValidationError, match="exactly one"):
        GRPOParams(reward="m:f", reward_model="runs/rm")
    with pytest.raises(ValidationError, match="module:function"):
        GRPOParams(reward="no_colon")


def test_grpo_loss_samples_groups_and_has_gradient(tiny_llama_dir, tmp_path):
    path = tmp_path / "reward.py"
    path.write_text("def score(prompt, completion, reference):\n    return float(len(completion.split()))\n")
    tok = tokenizer(tiny_llama_dir)
    obj = objective("grpo", reward=f"{path}:score", group_size=3, max_new_tokens=6)
    net = model(tiny_llama_dir, obj)
    obj.bind(net, tok)
    batch = obj.collate(obj.encode(PROMPTS, tok, INSTRUCTIONS), tok)
    assert batch["attention_mask"][1, 0] == 0  # prompts are left-padded for generation
    assert obj.count(batch) == 6
    torch.manual_seed(0)
    out = obj.loss(net, batch)
    assert out.count == 6 and torch.isfinite(out.total) and "reward_mean" in out.logs
    out.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_grpo_equal_rewards_give_zero_policy_gradient(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    obj = objective("grpo", reward="lmforge.objectives.grpo.rewards:exact_match", group_size=2,
                    max_new_tokens=4, beta=0.0)
    net = model(tiny_llama_dir, obj)
    obj.bind(net, tok)
    batch = obj.collate(obj.encode(PROMPTS, tok, INSTRUCTIONS), tok)
    torch.manual_seed(0)
    out = obj.loss(net, batch)  # random tiny model: never the exact answer, every reward 0
    out.total.backward()
    assert out.logs["reward_mean"] == 0.0
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in net.parameters())


def test_grpo_eval_reports_mean_reward(tiny_llama_dir, tmp_path):
    from lmforge.evaluate.run import evaluate

    path = tmp_path / "reward.py"
    path.write_text("def score(prompt, completion, reference):\n    return 2.0 if prompt == 'hello' else 1.0\n")
    tok = tokenizer(tiny_llama_dir)
    obj = objective("grpo", reward=f"{path}:score", max_new_tokens=4)
    net = model(tiny_llama_dir, obj)
    features = obj.encode(PROMPTS, tok, INSTRUCTIONS)
    metrics = evaluate(obj, net, features, lambda f: obj.collate(f, tok), 2)
    assert metrics["reward_mean"] == pytest.approx(1.5)
    assert metrics["eval_loss"] == pytest.approx(-1.5)


def test_grpo_with_reward_model(tiny_llama_dir):
    from lmforge.objectives.grpo.rewards import RewardModelScorer

    tok = tokenizer(tiny_llama_dir)
    scorer = RewardModelScorer(str(tiny_llama_dir))
    scores = scorer(["hello", "hello"], ["hi thanks", "no"], torch.device("cpu"))
    assert len(scores) == 2 and scores[0] != scores[1]
    obj = objective("grpo", reward_model=str(tiny_llama_dir), group_size=2, max_new_tokens=4)
    net = model(tiny_llama_dir, obj)
    obj.bind(net, tok)
    out = obj.loss(net, obj.collate(obj.encode(PROMPTS, tok, INSTRUCTIONS), tok))
    assert torch.isfinite(out.total) and out.count == 4


def test_encode_prompts_renders_generation_prompt_and_system(tiny_llama_dir):
    from lmforge.data.preference import encode_prompts

    tok = tokenizer(tiny_llama_dir)
    cfg = DataConfig(format="instruction", train="x.jsonl", max_length=64, system_prompt="answer with one name")
    (feature,) = encode_prompts(PROMPTS[:1], tok, cfg)
    text = tok.decode(feature["prompt_ids"])
    assert text.startswith("<|im_start|> system answer with one <unk> <|im_end|>")
    assert text.endswith("<|im_start|> assistant")  # sampling continues as the assistant
    assert feature["prompt"] == PROMPTS[0]["instruction"] and feature["reference"] == "paris"
    short = DataConfig(format="instruction", train="x.jsonl", max_length=8)
    (cut,) = encode_prompts(PROMPTS[:1], tok, short)
    assert cut["prompt_ids"] == encode_prompts(PROMPTS[:1], tok, DataConfig(format="instruction", train="x.jsonl"))[0]["prompt_ids"][-8:]
