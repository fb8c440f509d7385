"""Model paraphrases (augment.paraphrase): cleaning, plumbing with a tiny model, one real-model check."""

from __future__ import annotations

import json

import pytest

from lmforge.config.prepare import ParaphraseConfig, PrepareConfig
from lmforge.data.prepare import run_prepare
from lmforge.data.prepare.paraphrase import ModelParaphraser, clean_paraphrase
from lmforge.errors import UserError


def _load(name: str, **overrides):
    from lmforge.config.schema import ModelConfig
    from lmforge.model import load_model, load_tokenizer
    from lmforge.model.task import TaskInfo

    cfg = ModelConfig(name=str(name), dtype="float32", overrides=overrides)
    tokenizer = load_tokenizer(cfg)
    return load_model(cfg, TaskInfo("causal_lm"), tokenizer=tokenizer), tokenizer


def test_clean_paraphrase_strips_prefixes_and_quotes_and_drops_bad_ones():
    original = "The tea was fresh and strong."
    assert clean_paraphrase(original, 'Here is a paraphrase: "The tea tasted strong and fresh."\nMore', 2.0) == ("The tea tasted strong and fresh.", "kept")
    assert clean_paraphrase(original, "Paraphrase: The brew was strong and fresh.", 2.0)[0] == "The brew was strong and fresh."
    assert clean_paraphrase(original, "  ", 2.0) == (None, "empty")
    assert clean_paraphrase(original, "the tea was  fresh and strong.", 2.0) == (None, "identical")
    assert clean_paraphrase(original, "Tea.", 2.0) == (None, "length")


TEXTS = [
    "the food is good and the price is great",
    "i love this product , the taste is good",
    "bad taste and terrible price , i hate it",
    "what is the capital of france ? paris",
]


def _records():
    return [{"text": t + f" {w}", "text_pair": None, "label": "positive" if i % 2 else "negative", "_where": f"r.jsonl:{i}"}
            for i, (t, w) in enumerate((t, w) for w in ("one", "two", "three", "four", "five") for t in TEXTS)]


def test_paraphrases_go_to_train_only_are_counted_and_deterministic(tmp_path, tiny_llama_dir):
    model, tokenizer = _load(tiny_llama_dir)
    pcfg = ParaphraseConfig(model=str(tiny_llama_dir), max_new_tokens=8, max_length_ratio=50.0, batch_size=4)
    cfg = PrepareConfig(augment={"paraphrase": pcfg.model_dump()}, dedup={"near": False})
    outs = []
    for name in ("a", "b"):
        paraphrase = ModelParaphraser(model, tokenizer, pcfg, seed=0)
        outs.append(run_prepare(_records(), "classification", cfg, tmp_path / name, inputs=[], seed=0, paraphrase=paraphrase))
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    result = outs[0]
    originals = [r for r in result.train if "_augmented" not in r]
    made = [r for r in result.train if r.get("_augmented") == "paraphrase"]
    assert not any("_augmented" in r for r in result.validation + result.test)
    rules = json.loads(result.manifest_path.read_text())["rules"]
    dropped = sum(v["removed"] for k, v in rules.items() if k.startswith("augment_paraphrase_dropped"))
    assert rules.get("augment_paraphrase", {}).get("found", 0) == len(made)
    assert len(made) + dropped == len(originals)  # one attempt per train example
    for copy in made:
        source = next(r for r in originals if r["_where"] == copy["_where"])
        assert copy["label"] == source["label"] and copy["text"] != source["text"] and copy["text"].strip()


def test_paraphrase_config_without_a_model_loaded_is_a_user_error(tmp_path):
    cfg = PrepareConfig(augment={"paraphrase": {"model": "smollm2-135m-instruct"}})
    with pytest.raises(UserError, match="paraphrase"):
        run_prepare(_records(), "classification", cfg, tmp_path / "o", inputs=[], seed=0)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_smollm2_paraphrases_two_short_texts():
    model, tokenizer = _load("smollm2-135m-instruct")
    paraphrase = ModelParaphraser(model, tokenizer, ParaphraseConfig(model="smollm2-135m-instruct", max_new_tokens=32), seed=0)
    texts = ["The coffee arrived quickly and tasted fresh.", "This tea is too bitter for me."]
    out = paraphrase(texts)
    assert len(out) == 2
    kept = [p for group in out for p in group]
    assert kept, paraphrase.counts
    for original, group in zip(texts, out):
        for p in group:
            assert p.lower() != original.lower() and 0.5 < len(p) / len(original) < 2.0 and "\n" not in p
