"""KTO: loss math, unpaired encoding from pairs and from good/bad ratings, gradient direction."""

import pytest
import torch

from lmforge.config.schema import DataConfig
from lmforge.data.preference import encode_unpaired
from lmforge.errors import UserError
from lmforge.objectives.kto.objective import kto_losses
from tests.unit.objectives.preference_cases import PAIRS, PREF_DATA, model, objective, tokenizer

RATINGS = DataConfig(format="classification", train="ratings.jsonl", max_length=64)


def test_kto_loss_at_reference_is_half_the_weight():
    logps = torch.tensor([-3.0, -5.0])
    losses, rewards = kto_losses(logps, logps.clone(), torch.tensor([True, False]), beta=0.1,
                                 desirable_weight=1.0, undesirable_weight=2.0)
    assert torch.allclose(losses, torch.tensor([0.5, 1.0]))
    assert torch.equal(rewards, torch.zeros(2))


def test_kto_gradient_raises_good_and_lowers_bad():
    policy = torch.tensor([-3.0, -3.0], requires_grad=True)
    losses, _ = kto_losses(policy, torch.tensor([-3.5, -2.5]), torch.tensor([True, False]), beta=1.0)
    losses.sum().backward()
    assert policy.grad[0] < 0 < policy.grad[1]


def test_encode_unpaired_from_pairs_and_ratings(tiny_llama_dir):
    tok = tokenizer(tiny_llama_dir)
    from_pairs = encode_unpaired(PAIRS[:2], tok, PREF_DATA)
    assert [f["desirable"] for f in from_pairs] == [True, False, True, False]
    ratings = [
        {"text": "hello", "text_pair": "hi thanks", "label": "good"},
        {"text": "hello", "text_pair": "no", "label": "Bad"},
    ]
    from_ratings = encode_unpaired(ratings, tok, RATINGS)
    assert [f["desirable"] for f in from_ratings] == [True, False]
    trained = [t for t in from_ratings[0]["labels"] if t != -100]
    assert tok.decode(trained) == "hi thanks <|im_end|>"
    with pytest.raises(UserError, match="good/bad label"):
        encode_unpaired([{"text": "hello", "text_pair": "hi", "label": "maybe", "_where": "r.jsonl:3"}], tok, RATINGS)


def test_kto_objective_runs_and_reports_metrics(tiny_llama_dir):
    from lmforge.evaluate.run import evaluate

    tok = tokenizer(tiny_llama_dir)
    obj = objective("kto")
    net = model(tiny_llama_dir, obj)
    obj.bind(net, tok)
    features = obj.encode(PAIRS, tok, PREF_DATA)
    batch = obj.collate(features, tok)
    assert obj.count(batch) == 2 * len(PAIRS)
    out = obj.loss(net, batch)
    assert out.total.item() == pytest.approx(0.5 * out.count, abs=1e-5)  # policy == reference
    out.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    metrics = evaluate(obj, net, features, lambda f: obj.collate(f, tok), 4)
    assert {"reward_accuracy", "reward_margin", "reward_desirable", "reward_undesirable"} <= set(metrics)
