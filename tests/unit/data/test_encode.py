"""encode_causal / encode_classification on the tiny ChatML tokenizer: chunking, loss masks, drops."""

from __future__ import annotations

import pytest

from lmforge.config.schema import DataConfig
from lmforge.data.encode import encode_causal, encode_classification, label_set
from lmforge.data.chat import _trained_by_prefix, encode_chat
from lmforge.errors import UserError

CHAT = [
    {"role": "system", "content": "you are a model"},
    {"role": "user", "content": "what is the capital of france?"},
    {"role": "assistant", "content": "paris"},
    {"role": "user", "content": "and the bank rate?"},
    {"role": "assistant", "content": "the rate is five , i think"},
    {"role": "user", "content": "thanks"},
    {"role": "assistant", "content": "you are good"},
]


def cfg(format="chat", **kw):
    return DataConfig(format=format, train="unused.jsonl", **kw)


def runs(labels):
    """Contiguous runs of trained positions -> list of (start, end)."""
    out, start = [], None
    for i, label in enumerate(labels + [-100]):
        if label != -100 and start is None:
            start = i
        elif label == -100 and start is not None:
            out.append((start, i))
            start = None
    return out


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_text_documents_get_eos_concatenated_and_chunked(tiny_tok):
    docs = [{"text": " ".join(["the money"] * 10)}, {"text": "a bank loan"}]  # 20 + 1 and 3 + 1 tokens
    out = encode_causal(docs, tiny_tok, cfg("text", max_length=8))
    stream = ids(tiny_tok, docs[0]["text"]) + [tiny_tok.eos_token_id] + ids(tiny_tok, "a bank loan")
    stream += [tiny_tok.eos_token_id]
    assert len(stream) == 25
    # 3 full blocks of 8; the last 1-token remainder is dropped (< 16 tokens)
    assert [f["input_ids"] for f in out] == [stream[0:8], stream[8:16], stream[16:24]]
    assert all(f["labels"] == f["input_ids"] for f in out)
    assert out.dropped == 1


def test_text_tail_of_16_tokens_or_more_is_kept(tiny_tok):
    out = encode_causal([{"text": " ".join(["tax"] * 40)}], tiny_tok, cfg("text", max_length=24))
    assert [len(f["input_ids"]) for f in out] == [24, 17] and out.dropped == 0


def test_mask_is_exactly_assistant_content_plus_end_of_turn(tiny_tok):
    (feature,) = encode_causal([{"messages": CHAT}], tiny_tok, cfg())
    input_ids, labels = feature["input_ids"], feature["labels"]
    assert len(input_ids) == len(labels)
    assistant = [m["content"] for m in CHAT if m["role"] == "assistant"]
    spans = runs(labels)
    assert len(spans) == len(assistant)
    header = tiny_tok.convert_tokens_to_ids("assistant")
    for (start, end), content in zip(spans, assistant):
        assert labels[start:end] == input_ids[start:end]
        assert input_ids[start:end] == ids(tiny_tok, content) + [tiny_tok.convert_tokens_to_ids("<|im_end|>")]
        assert input_ids[start - 1] == header  # the "<|im_start|>assistant" header itself is not trained


def test_train_on_all_trains_every_token(tiny_tok):
    (feature,) = encode_causal([{"messages": CHAT}], tiny_tok, cfg(train_on="all"))
    assert feature["labels"] == feature["input_ids"]


def test_instruction_becomes_system_user_assistant(tiny_tok):
    rec = {"instruction": "what is tax", "input": "in france", "output": "money", "system": "be good"}
    enc = encode_chat(
        [
            {"role": "system", "content": "be good"},
            {"role": "user", "content": "what is tax\n\nin france"},
            {"role": "assistant", "content": "money"},
        ],
        tiny_tok,
    )
    (feature,) = encode_causal([rec], tiny_tok, cfg("instruction"))
    assert feature == {"input_ids": enc.input_ids, "labels": enc.labels}
    trained = [t for t in feature["labels"] if t != -100]
    assert tiny_tok.convert_ids_to_tokens(trained) == ["money", "<|im_end|>"]


def test_truncation_and_dropped_examples_are_counted(tiny_tok):
    long_prompt = {"messages": [{"role": "user", "content": "the " * 40}, {"role": "assistant", "content": "yes"}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    out = encode_causal([long_prompt, short], tiny_tok, cfg(max_length=20))
    assert len(out) == 1 and out.dropped == 1 and out.truncated == 1
    assert len(out[0]["input_ids"]) <= 20
    with pytest.raises(UserError, match="no example left"):
        encode_causal([long_prompt], tiny_tok, cfg(max_length=20))


def test_the_user_hears_which_examples_were_left_out_or_cut_and_the_length_that_keeps_them(tiny_tok):
    long_prompt = {"messages": [{"role": "user", "content": "the " * 40}, {"role": "assistant", "content": "yes"}],
                   "_where": "docs.jsonl:3"}
    long_answer = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "money " * 30}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    records = [short, long_prompt, long_answer]
    out = encode_causal(records, tiny_tok, cfg(max_length=20))
    longest = max(len(encode_chat(r["messages"], tiny_tok, "completion").input_ids) for r in records)
    assert (out.dropped, out.truncated, out.longest) == (1, 2, longest)
    note = out.note(3, 20)
    assert note == ("1 of 3 examples left out: no trained token within data.max_length=20 (the first: docs.jsonl:3); "
                    "1 of 3 cut short at data.max_length=20 (their answers lose the end); "
                    f"the longest is {longest} tokens: raise data.max_length to keep every example whole, or shorten "
                    "the inputs")
    assert encode_causal([short, short], tiny_tok, cfg(max_length=20)).note(2, 20) is None
    # a split encoded in blocks (memory-mapped shards) is said once, with all blocks' counts
    from lmforge.data.encode import Encoded

    blocks = [encode_causal(part, tiny_tok, cfg(max_length=20)) for part in ([short, long_prompt], [long_answer])]
    assert Encoded.combined(blocks).note(3, 20) == note

    # the run says it per split, naming the split
    from pathlib import Path

    from lmforge.config import parse_config
    from lmforge.data.splits import Splits
    from lmforge.objectives import build_objective
    from lmforge.pipeline.single import SingleTask

    config = parse_config({"model": {"name": "m"}, "data": {"format": "chat", "train": "t.jsonl", "max_length": 20}})
    said: list[str] = []
    SingleTask(Splits(records, [short], [short, long_prompt], [Path("t.jsonl")]), config.data).encode(
        build_objective("causal_lm", None), tiny_tok, config, said.append)
    assert said[0] == f"  train: {note}" and said[1].startswith("  test: 1 of 2 examples left out") and len(said) == 2
    # text: documents are cut into blocks, which eval_examples and steps count (a short remainder is not worth a word)
    text = encode_causal([{"text": "the money " * 10}] * 2, tiny_tok, cfg("text", max_length=8))
    assert text.note(2, 8) == f"2 documents -> {len(text)} blocks of up to 8 tokens (each block is an example)"
    assert len(text) >= 2 and Encoded.combined([text, text]).note(4, 8).startswith(f"4 documents -> {2 * len(text)} blocks")


def test_builtin_template_when_the_tokenizer_has_none():
    from tests.fixtures.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.chat_template = None
    enc = encode_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}], tok)
    assert enc.text == "user: hi<|im_end|>\nassistant: hello there<|im_end|>\n"
    trained = [t for t in enc.labels if t != -100]
    assert tok.convert_ids_to_tokens(trained) == ["hello", "<unk>", "<|im_end|>"]


def test_prefix_count_fallback_agrees_with_offsets(tiny_tok):
    enc = encode_chat(CHAT, tiny_tok)
    trained = _trained_by_prefix(tiny_tok, enc.text, enc.spans, len(enc.input_ids))
    assert trained == [label != -100 for label in enc.labels]


def test_causal_rejects_classification_data(tiny_tok):
    with pytest.raises(UserError, match="not trained as a causal"):
        encode_causal([{"text": "a", "label": "x"}], tiny_tok, cfg("classification"))


def test_classification_encoding_and_label_set(tiny_tok):
    recs = [
        {"text": "good food", "text_pair": None, "label": "pos", "_where": "f:1"},
        {"text": "bad food", "text_pair": "the price", "label": "neg", "_where": "f:2"},
    ]
    assert label_set(recs, cfg("classification")) == ["neg", "pos"]
    assert label_set(recs, cfg("classification", labels=["pos", "neg"])) == ["pos", "neg"]
    feats = encode_classification(recs, tiny_tok, cfg("classification", max_length=8), ["neg", "pos"])
    assert [f["label"] for f in feats] == [1, 0]
    assert feats[0]["input_ids"] == ids(tiny_tok, "good food")
    assert len(feats[1]["input_ids"]) > len(ids(tiny_tok, "bad food"))  # the pair is included
    with pytest.raises(UserError, match="label 'pos' is not one of the known labels") as err:
        encode_classification(recs, tiny_tok, cfg("classification"), ["neg"])
    assert err.value.where == "f:1"


def test_classification_token_type_ids_from_a_bert_tokenizer():
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "food"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    feats = encode_classification(
        [{"text": "good", "text_pair": "food", "label": "a"}], tok, cfg("classification"), ["a"]
    )
    assert feats[0]["input_ids"] == [2, 5, 3, 6, 3]  # [CLS] good [SEP] food [SEP]
    assert feats[0]["token_type_ids"] == [0, 0, 0, 1, 1]


def test_template_errors_become_user_errors(tiny_tok):
    from tests.fixtures.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.chat_template = "{{ raise_exception('System role not supported') }}"
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "_where": "c:4"}
    with pytest.raises(UserError, match="System role not supported") as err:
        encode_causal([rec], tok, cfg())
    assert err.value.where == "c:4" and "alternating" in err.value.hint
