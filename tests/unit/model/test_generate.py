"""The generation engine: cached batched greedy == uncached greedy, stops, rows leaving the batch, sampling.

Tolerance for "logits close" (cache vs full recompute, batched vs alone): both compute the same
fp32 sums in a different order and shape (one new query against cached keys vs all queries; a
padded batch vs one row). A length-K fp32 dot product in a different order differs by about
sqrt(K) x 6e-8 relative (unit roundoff, random-walk accumulation): ~1.4e-6 for SmolLM2's
hidden 576. Through 30 residual layers this was measured at 4e-5..7e-5 on logits of magnitude
~35 (2e-6 relative) on SmolLM2 prompts; the bound 1e-5 x max|logit| + 1e-5 leaves ~5x room,
and is far below the gap between distinct greedy choices the tests rely on.
"""

from __future__ import annotations

import pytest
import torch

from lmforge.hardware import cpu_has_native_bf16
from lmforge.model.decode import precision_context
from lmforge.model.generate import Sampling, generate_tokens, stop_token_ids

QUESTIONS = ["what is the capital of france ?", "how do interest rates affect a loan ?", "hi",
             "what is a bond fund and why would i buy one for my money ?", "tax ?"]


def _bound(reference: torch.Tensor) -> float:
    return 1e-5 + 1e-5 * float(reference.abs().max())


@torch.no_grad()
def uncached_greedy(model, prompt: list[int], stops: set[int], n: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy by full recomputation of the whole sequence every step (no cache, no padding)."""
    ids, new, steps = torch.tensor([prompt]), [], []
    for _ in range(n):
        logits = model(input_ids=ids, use_cache=False).logits[0, -1].float()
        token = int(logits.argmax())
        new.append(token)
        steps.append(logits)
        if token in stops:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return new, steps


def _prompts(tok, questions=QUESTIONS) -> list[list[int]]:
    return [tok(tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True),
                add_special_tokens=False)["input_ids"] for q in questions]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(tiny_llama_dir)


def _check_equal_to_uncached(model, tok, prompts, n, batch_size):
    stops = stop_token_ids(tok, model)
    results = generate_tokens(model, prompts, max_new_tokens=n, stop_ids=stops, pad_id=tok.pad_token_id,
                              batch_size=batch_size, keep_logits=True, precision="model")
    for prompt, result in zip(prompts, results):
        tokens, steps = uncached_greedy(model, prompt, set(stops), n)
        assert result.all_tokens == tokens
        assert len(result.logits) == len(steps)
        for cached, full in zip(result.logits, steps):
            assert float((cached - full).abs().max()) <= _bound(full)
    return results


@pytest.mark.parametrize("batch_size", [1, 8])
def test_cached_greedy_equals_uncached_on_tiny_llama(tiny, batch_size):
    model, tok = tiny
    results = _check_equal_to_uncached(model, tok, _prompts(tok), 12, batch_size)
    assert all(len(r.all_tokens) >= 1 for r in results)


def test_batched_equals_one_by_one_and_keeps_order(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    together = generate_tokens(model, prompts, max_new_tokens=10, batch_size=3)
    alone = [generate_tokens(model, [p], max_new_tokens=10)[0] for p in prompts]
    assert [r.tokens for r in together] == [r.tokens for r in alone]


def _counting(model):
    """Record the batch size of every forward."""
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, _a, kw: sizes.append(kw["input_ids"].shape[0]),
                                             with_kwargs=True)
    return sizes, handle


def test_stop_ids_length_and_finished_rows_leave_the_batch(tiny):
    model, tok = tiny
    prompts = _prompts(tok)[:3]
    free = generate_tokens(model, prompts, max_new_tokens=6)
    stop = free[0].tokens[1]  # row 0 ends at its second token; the others wherever they first emit it
    sizes, handle = _counting(model)
    try:
        stopped = generate_tokens(model, prompts, max_new_tokens=[6, 4, 2], stop_ids=[stop])
    finally:
        handle.remove()
    for row, limit in enumerate((6, 4, 2)):
        chosen = free[row].tokens[:limit]
        if stop in chosen:
            cut = chosen.index(stop)
            assert stopped[row].tokens == chosen[:cut] and stopped[row].stop_token == stop
            assert stopped[row].finish_reason == "stop" and stopped[row].all_tokens == chosen[:cut + 1]
        else:
            assert stopped[row].tokens == chosen and stopped[row].finish_reason == "length"
            assert stopped[row].stop_token is None
    assert stopped[0].finish_reason == "stop" and len(stopped[0].all_tokens) <= 2
    # prefill with 3 rows, then each decode step only with the rows still running
    assert sizes[0] == 3 and sizes == sorted(sizes, reverse=True)
    assert len(sizes) == max(len(r.all_tokens) for r in stopped)
    steps_with = [sum(len(r.all_tokens) > step for r in stopped) for step in range(1, len(sizes))]
    assert sizes[1:] == steps_with


def test_callbacks_end_rows_and_report_each_row_once(tiny):
    model, tok = tiny
    prompts = _prompts(tok)[:4]
    seen, finished = {}, []

    def on_token(row, token):
        seen.setdefault(row, []).append(token)
        return "cancelled" if row == 1 else None

    results = generate_tokens(model, prompts, max_new_tokens=[5, 5, 0, 5], on_token=on_token,
                              on_finish=lambda row, r: finished.append((row, r.finish_reason)))
    assert sorted(finished) == [(0, "length"), (1, "cancelled"), (2, "length"), (3, "length")]
    assert len(seen[1]) == 1 and results[1].finish_reason == "cancelled"
    assert results[2].tokens == [] and 2 not in seen
    assert seen[0] == results[0].tokens and len(results[0].tokens) == 5


def test_sampling_repeats_with_a_seed_and_greedy_rows_stay_greedy(tiny):
    model, tok = tiny
    prompts = _prompts(tok)[:3]
    hot = [Sampling(temperature=1.5, top_p=0.95), Sampling(), Sampling(temperature=1.5)]

    def run(seed):
        return [r.tokens for r in generate_tokens(model, prompts, max_new_tokens=8, sampling=hot,
                                                  generators=[torch.Generator().manual_seed(seed), None, None])]

    torch.manual_seed(0)
    first = run(1)
    torch.manual_seed(0)
    assert run(1) == first
    greedy = generate_tokens(model, prompts, max_new_tokens=8)
    assert first[1] == greedy[1].tokens
    torch.manual_seed(1)
    others = [run(seed) for seed in (2, 3, 4)]
    assert any(o[0] != first[0] for o in others)  # the seeded row does depend on its seed


def test_restores_training_mode_and_leaves_no_inference_tensors(tiny):
    model, tok = tiny
    model.train()
    try:
        generate_tokens(model, _prompts(tok)[:2], max_new_tokens=3)
        assert model.training
        out = model(input_ids=torch.tensor([_prompts(tok)[0]]), labels=torch.tensor([_prompts(tok)[0]]))
        out.loss.backward()  # buffers touched while generating still work under autograd
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)


@pytest.fixture(scope="module")
def prompt_tuned(tiny_llama_dir):
    """The tiny Llama under PEFT prompt tuning (4 virtual tokens): decoded through PEFT's own generate."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    torch.manual_seed(0)
    return get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()


def test_prompt_learning_peft_model_generates_through_its_own_generate(prompt_tuned, tiny):
    model, (_, tok) = prompt_tuned, tiny
    prompt = _prompts(tok)[0]
    result = generate_tokens(model, [prompt], max_new_tokens=5)[0]
    ids = torch.tensor([prompt])
    expected = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                              pad_token_id=tok.pad_token_id, eos_token_id=None)[0, ids.shape[1]:].tolist()
    assert result.tokens == expected[: len(result.tokens)] and len(result.tokens) == 5


def test_logprobs_are_the_log_softmax_of_the_uncached_logits(tiny):
    """Each row's recorded log-probabilities (chosen token and its k likeliest alternatives) are the log-softmax
    of the logits a full recomputation gives: the logits agree within _bound, and a log-softmax moves each value
    by at most that plus the same error through its logsumexp, hence 2 x _bound."""
    model, tok = tiny
    prompts = _prompts(tok)[:4]
    stops = set(stop_token_ids(tok, model))
    order: list[tuple] = []
    results = generate_tokens(model, prompts, max_new_tokens=6, stop_ids=stops, pad_id=tok.pad_token_id,
                              batch_size=8, logprobs=[3, None, 0, 5], prompt_logprobs=[True, False, False, True],
                              on_logprob=lambda row, e: order.append(("logprob", row, e.token)),
                              on_token=lambda row, t: order.append(("token", row, t)))
    assert results[1].logprobs == [] and results[0].tokens
    assert results[1].prompt_logprobs == results[2].prompt_logprobs == []
    for row, k in ((0, 3), (3, 5)):  # prompts of different lengths, left-padded in one batch: scored as alone
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompts[row]])).logits[0, :-1].float()
        ref = torch.log_softmax(logits, dim=-1)
        entries = results[row].prompt_logprobs
        assert [e.token for e in entries] == prompts[row][1:]
        for pos, entry in enumerate(entries):
            assert abs(entry.logprob - float(ref[pos, entry.token])) <= 2 * _bound(logits[pos])
            assert [t for t, _ in entry.top] == ref[pos].topk(k).indices.tolist()
    for row, k in ((0, 3), (2, 0), (3, 5)):
        tokens, steps = uncached_greedy(model, prompts[row], stops, 6)
        result = results[row]
        assert [e.token for e in result.logprobs] == result.tokens == tokens[: len(result.tokens)]
        for entry, logits in zip(result.logprobs, steps):
            ref = torch.log_softmax(logits, dim=-1)
            assert abs(entry.logprob - float(ref[entry.token])) <= 2 * _bound(logits)
            assert len(entry.top) == k and [t for t, _ in entry.top] == ref.topk(k).indices.tolist()
            assert all(abs(v - float(ref[t])) <= 2 * _bound(logits) for t, v in entry.top)
    for i, event in enumerate(order):  # every token of a row with log-probabilities: its entry just before it
        if event[0] == "token" and event[1] != 1:
            assert order[i - 1] == ("logprob", event[1], event[2])
    assert not any(e[0] == "logprob" and e[1] == 1 for e in order)


def test_prompt_learning_path_records_logprobs(prompt_tuned, tiny):
    """Through PEFT's own generate (raw per-step logits): the same log-probabilities as its forward pass."""
    model, (_, tok) = prompt_tuned, tiny
    prompt = _prompts(tok)[0]
    result = generate_tokens(model, [prompt], max_new_tokens=5, logprobs=2, prompt_logprobs=True)[0]
    assert len(result.logprobs) == len(result.tokens) == 5
    with torch.no_grad():
        full = model(input_ids=torch.tensor([prompt + result.tokens])).logits[0].float()
    logits = full[-6:-1]
    ref = torch.log_softmax(logits, dim=-1)
    for pos, entry in enumerate(result.logprobs):
        assert entry.token == result.tokens[pos] == entry.top[0][0]  # greedy: the likeliest token
        assert abs(entry.logprob - float(ref[pos, entry.token])) <= 2 * _bound(logits[pos])
        assert [t for t, _ in entry.top] == ref[pos].topk(2).indices.tolist()
    # the prompt's tokens after the first, scored by a forward over the prompt (virtual tokens in front)
    assert [e.token for e in result.prompt_logprobs] == prompt[1:]
    before = full[-len(prompt) - 5:-6]
    prompt_ref = torch.log_softmax(before, dim=-1)
    for pos, entry in enumerate(result.prompt_logprobs):
        assert abs(entry.logprob - float(prompt_ref[pos, entry.token])) <= 2 * _bound(before[pos])
        assert len(entry.top) == 2


def test_native_bf16_detection_reads_cpu_flags(tiny):
    assert cpu_has_native_bf16("flags : fpu avx512f avx512_bf16 avx512_vnni", environ={})
    assert cpu_has_native_bf16("flags : fpu amx_bf16 amx_tile", environ={})
    assert not cpu_has_native_bf16("flags : fpu avx512f avx512_vnni avx512bw", environ={})
    model, _ = tiny
    with precision_context(model, "model"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError):
        precision_context(model, "fp8")


def test_per_row_arguments_are_checked(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_tokens(model, _prompts(tok)[:2], max_new_tokens=[3])
    with pytest.raises(ValueError, match="generators"):
        generate_tokens(model, _prompts(tok)[:2], max_new_tokens=3, generators=[None])


@pytest.mark.slow
def test_cached_greedy_equals_uncached_on_smollm2(smollm2_dir):
    """Real SmolLM2 prompts (FiQA-style questions), batched with left padding, 16 greedy tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    questions = ["What is the capital of France?", "Can I send a money order from USPS as a business?",
                 "How do interest rates affect loans?"]
    _check_equal_to_uncached(model, tok, _prompts(tok, questions), 16, batch_size=8)


def test_repetition_penalty_is_transformers_rule():
    """Same operation as transformers' RepetitionPenaltyLogitsProcessor (divide positive logits, multiply
    negative ones, on each seen id once), so the results are equal bit for bit."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    from lmforge.model.sampling import penalize_repeats

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 50, generator=gen)
    seen = [[3, 7, 7, 49, 0], [12]]
    ours = penalize_repeats(logits, [Sampling(repetition_penalty=1.3)] * 2, seen)
    for row in range(2):
        theirs = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([seen[row]]), logits[row:row + 1].clone())
        assert torch.equal(ours[row], theirs[0])
    assert penalize_repeats(logits, [Sampling()] * 2, seen) is logits  # off: untouched


def test_repetition_penalty_decodes_like_transformers_generate(tiny):
    """Greedy with a penalty through the cached, batched engine = transformers' greedy generate with the
    same repetition_penalty (one prompt at a time, no padding), token for token."""
    model, tok = tiny
    prompts = _prompts(tok)
    results = generate_tokens(model, prompts, max_new_tokens=12, batch_size=4, precision="model",
                              sampling=Sampling(repetition_penalty=50.0))
    plain = generate_tokens(model, prompts, max_new_tokens=12, batch_size=4, precision="model")
    for prompt, result in zip(prompts, results):
        ids = torch.tensor([prompt])
        expected = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                  do_sample=False, repetition_penalty=50.0, eos_token_id=None, pad_token_id=0)
        assert result.tokens == expected[0, len(prompt):].tolist()
    assert [r.tokens for r in results] != [r.tokens for r in plain]  # the penalty changed some answer


def test_auto_precision_decodes_in_the_weights_dtype_on_cpu(tiny, monkeypatch):
    # bf16 autocast made CPU decoding slower on an AMX CPU (frozen weights were cast again every step)
    monkeypatch.setattr("lmforge.model.decode.native_bf16", lambda device: True)
    model, _ = tiny
    with precision_context(model, "auto"):
        assert not torch.is_autocast_enabled("cpu")


def test_presence_frequency_and_bias_follow_openai_rule():
    """logit[j] -= presence x [c_j > 0] + frequency x c_j over the answer's counts c, then += bias[j]; the prompt
    is not counted, rows without settings and the caller's tensor are untouched."""
    from lmforge.model.sampling import adjust_logits

    logits = torch.zeros(3, 10)
    rows = [Sampling(presence_penalty=0.5, frequency_penalty=0.25, logit_bias=((7, 2.0), (3, -1.0))),
            Sampling(), Sampling(presence_penalty=1.0)]
    out = adjust_logits(logits, rows, prompts=[[5, 9], [3], [4, 4]], answers=[[3, 3, 5], [3], []])
    expected = torch.zeros(3, 10)
    expected[0, 3] = -(0.5 + 2 * 0.25) - 1.0
    expected[0, 5] = -(0.5 + 0.25)
    expected[0, 7] = 2.0
    assert torch.equal(out, expected)
    assert torch.equal(logits, torch.zeros(3, 10)) and out is not logits
    assert adjust_logits(logits, [Sampling()] * 3, [[1]] * 3, [[1]] * 3) is logits  # nothing set: no copy


def _adjusted_greedy(model, prompt: list[int], sampling: Sampling, n: int) -> list[int]:
    """Greedy by full recomputation, with the penalties and bias written out by hand from their definition."""
    ids, new = list(prompt), []
    for _ in range(n):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].float()
        for token in set(new):
            logits[token] -= sampling.presence_penalty + sampling.frequency_penalty * new.count(token)
        for token, bias in sampling.logit_bias:
            logits[token] += bias
        new.append(int(logits.argmax()))
        ids.append(new[-1])
    return new


@pytest.mark.parametrize("sampling", [Sampling(frequency_penalty=2.0), Sampling(presence_penalty=2.0),
                                      Sampling(presence_penalty=-2.0, frequency_penalty=0.5)])
def test_penalties_decode_as_their_definition(tiny, sampling):
    model, tok = tiny
    prompts = _prompts(tok)[:3]
    results = generate_tokens(model, prompts, max_new_tokens=10, sampling=sampling, batch_size=3, precision="model")
    plain = generate_tokens(model, prompts, max_new_tokens=10, batch_size=3, precision="model")
    for prompt, result in zip(prompts, results):
        assert result.tokens == _adjusted_greedy(model, prompt, sampling, 10)
    if sampling.frequency_penalty > 0 and sampling.presence_penalty >= 0:
        assert [r.tokens for r in results] != [r.tokens for r in plain]  # the penalty changed some answer


def test_logit_bias_forces_and_bans_tokens_on_both_paths(prompt_tuned, tiny):
    """+100 makes a token every choice, -100 keeps it out, in lmforge's decode loop and through PEFT's generate."""
    (model, tok), prompted = tiny, prompt_tuned
    prompt = _prompts(tok)[0]
    forced = tok.convert_tokens_to_ids("bank")
    for m in (model, prompted):
        plain = generate_tokens(m, [prompt], max_new_tokens=4)[0].tokens
        assert plain != [forced] * 4
        assert generate_tokens(m, [prompt], max_new_tokens=4,
                               sampling=Sampling(logit_bias=((forced, 100.0),)))[0].tokens == [forced] * 4
        banned = generate_tokens(m, [prompt], max_new_tokens=4, sampling=Sampling(logit_bias=((plain[0], -100.0),)))
        assert plain[0] not in banned[0].tokens
