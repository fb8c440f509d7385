"""Export a merged Llama-architecture model folder to one GGUF file (llama.cpp, Ollama, LM Studio).

Written with the ``gguf`` package (the writer llama.cpp's own converter uses): tensor names come
from its ``TensorNameMap`` for ``MODEL_ARCH.LLAMA``, Q8_0 blocks from ``gguf.quants``. The file
carries the Llama hyper-parameters, the byte-level BPE tokenizer (tokens, merges, token types,
bos/eos/pad/unk, end-of-turn) and the chat template, so llama.cpp / Ollama render prompts the way
training did and stop on the template's end-of-turn token.

Supported: ``model_type == "llama"`` (SmolLM2, Llama 2/3 without rope scaling, TinyLlama, ...)
with a byte-level BPE ``tokenizer.json``. Anything else is refused with a UserError.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from lmforge.errors import UserError

OUTTYPES = ("f32", "f16", "q8_0")

# tokenizer.json pre-tokenizer -> llama.cpp's name for the same split (tokenizer.ggml.pre).
_LLAMA3_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def export_gguf(merged_dir: str | Path, out_path: str | Path, outtype: str = "f16") -> Path:
    """Convert the merged transformers folder ``merged_dir`` into the GGUF file ``out_path``.

    merged_dir: ``config.json`` (model_type llama), safetensors weights, ``tokenizer.json``
    (byte-level BPE) and the tokenizer config / chat template, as ``export_merged`` writes them.
    outtype: "f32" | "f16" | "q8_0" for the 2-D weight matrices; norms stay f32 (as llama.cpp's
    converter does), and a q8_0 matrix whose rows are not a multiple of 32 falls back to f16.
    The file appears whole or not at all; returns ``out_path``.
    """
    import gguf
    from transformers import AutoConfig, AutoTokenizer

    if outtype not in OUTTYPES:
        raise UserError(f"unknown GGUF outtype '{outtype}'", where="export.gguf", hint=f"one of {', '.join(OUTTYPES)}")
    merged_dir, out_path = Path(merged_dir), Path(out_path)
    config = AutoConfig.from_pretrained(merged_dir)
    _check_architecture(config)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    tokenizer_json = _tokenizer_json(merged_dir)
    with _atomic_file(out_path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        _add_model_metadata(writer, config, outtype, merged_dir.name)
        _add_tokenizer_metadata(writer, tokenizer, tokenizer_json, config.vocab_size)
        for name, array, qtype in _gguf_tensors(merged_dir, config, outtype):
            writer.add_tensor(name, array, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_path


def load_gguf(gguf_path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """``(model, tokenizer)`` read back by transformers' own GGUF loader (dequantized to ``dtype``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    return model.eval(), tokenizer


def _check_architecture(config: Any) -> None:
    where = "export.gguf"
    if config.model_type != "llama":
        raise UserError(f"GGUF export supports Llama-architecture models, not '{config.model_type}'", where=where,
                        hint="export the merged safetensors folder and convert it with llama.cpp's convert_hf_to_gguf.py")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise UserError(f"GGUF export does not handle rope scaling '{rope.get('rope_type')}' yet", where=where,
                        hint="convert the merged folder with llama.cpp's convert_hf_to_gguf.py")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise UserError("GGUF export does not handle Llama models with attention/MLP biases", where=where)


def _rope_theta(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _add_model_metadata(writer: Any, config: Any, outtype: str, name: str) -> None:
    import gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads or heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[outtype])
    if outtype == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tokenizer_json(merged_dir: Path) -> dict:
    path = merged_dir / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"no tokenizer.json in {merged_dir}", where="export.gguf",
                        hint="GGUF export needs a fast (tokenizers) byte-level BPE tokenizer")
    return json.loads(path.read_text(encoding="utf-8"))


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for this byte-level BPE tokenizer, or a UserError.

    Known splits: GPT-2 (ByteLevel with its regex), SmolLM (single digits, then GPT-2), and
    Llama 3 (its Split regex, then ByteLevel without regex). An unknown split would tokenize
    differently in llama.cpp, so it is refused rather than guessed.
    """
    model = tokenizer_json.get("model") or {}
    decoder = tokenizer_json.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise UserError(f"GGUF export needs a byte-level BPE tokenizer; this one is '{model.get('type')}'"
                        + (" with byte fallback (SentencePiece style)" if model.get("byte_fallback") else ""),
                        where="export.gguf", hint="use a model with a GPT-2/Llama-3 style tokenizer, or convert "
                        "the merged folder with llama.cpp's convert_hf_to_gguf.py")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and (steps[0].get("pattern") or {}).get("Regex") == _LLAMA3_REGEX:
        return "llama-bpe"
    raise UserError(f"GGUF export does not know this tokenizer's pre-tokenizer ({' + '.join(map(str, kinds))})",
                    where="export.gguf", hint="convert the merged folder with llama.cpp's convert_hf_to_gguf.py")


def _add_tokenizer_metadata(writer: Any, tokenizer: Any, tokenizer_json: dict, vocab_size: int) -> None:
    import gguf
    from lmforge.evaluate.generate import template_end_of_turn

    pre = pre_tokenizer_name(tokenizer_json)
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise UserError(f"tokenizer has id {max(by_id)} but the model only {vocab_size} embeddings", where="export.gguf")
    added = {a["id"]: a for a in tokenizer_json.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):  # ids without a token pad the embedding matrix
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                      ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            add(int(token_id))
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    writer.add_add_bos_token(bool(probe) and tokenizer.bos_token_id is not None and probe[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(bool(probe) and tokenizer.eos_token_id is not None and probe[-1] == tokenizer.eos_token_id)
    end_of_turn = template_end_of_turn(tokenizer)
    if end_of_turn is not None:  # llama.cpp / Ollama stop on it even when it is not eos
        writer.add_eot_token_id(int(tokenizer.convert_tokens_to_ids(end_of_turn)))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _gguf_tensors(merged_dir: Path, config: Any, outtype: str) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(GGUF name, array, raw GGML type or None) for every weight, Q/K rows permuted for llama.cpp."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    for hf_name, tensor in _state_dict(merged_dir):
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"GGUF export cannot map tensor '{hf_name}' to a llama.cpp name", where="export.gguf")
        data = tensor.float()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = _permute(data, heads, heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = _permute(data, heads, kv_heads)
        array = data.numpy()
        if array.ndim < 2 or outtype == "f32":
            yield name, array.astype(np.float32), None
        elif outtype == "q8_0" and array.shape[-1] % 32 == 0:
            yield name, gguf.quants.quantize(array, Q.Q8_0), Q.Q8_0
        else:
            yield name, array.astype(np.float16), None


def _permute(weight: torch.Tensor, n_head: int, n_head_kv: int) -> torch.Tensor:
    """llama.cpp's rotary layout for Q/K rows (``LlamaModel.permute`` in convert_hf_to_gguf.py);
    transformers' GGUF loader applies the inverse."""
    if n_head != n_head_kv:
        n_head = n_head_kv
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _state_dict(merged_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import safe_open

    index = merged_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (merged_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise UserError(f"no safetensors weights in {merged_dir}", where="export.gguf",
                        hint="export the merged model first (export.merged: true)")
    for file in files:
        with safe_open(str(merged_dir / file), framework="pt") as fh:
            for key in fh.keys():
                yield key, fh.get_tensor(key)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """A temp path beside ``path`` that replaces it on success and is removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def verify_gguf(reference_model: Any, reference_tokenizer: Any, gguf_path: str | Path, prompts: list, *,
                outtype: str, max_new_tokens: int = 16, report_path: str | Path | None = None) -> Any:
    """Parity of ``gguf_path`` (reloaded by transformers' GGUF loader) with the reference model.

    Uses :data:`lmforge.export.parity.TOLERANCES` ``[outtype]``; writes ``report_path`` (default:
    ``parity.json`` beside the GGUF); returns the ParityResult or raises ParityError.
    """
    from lmforge.export.parity import TOLERANCES, check_parity

    tol = TOLERANCES[outtype]
    gguf_path = Path(gguf_path)
    return check_parity(reference_model, reference_tokenizer, lambda: load_gguf(gguf_path), prompts,
                        atol=tol.atol, rtol=tol.rtol, max_new_tokens=max_new_tokens, fmt=f"gguf-{outtype}",
                        report_path=report_path or gguf_path.parent / "parity.json")
