"""Late-interaction re-scoring of the hybrid's top passages with the embedding model's token vectors.

MiniLM mean-pools its token vectors into one passage vector, which averages everything a
passage says. Its token vectors also say which words of the passage answer which words of
the query: MaxSim (ColBERT's score) lets each query token find its closest passage token,

    maxsim(q, p) = mean over query tokens t of max over passage tokens u of cos(t, u),

a soft term match (a query word can meet a related passage word) that neither BM25's exact
stems nor the single averaged cosine gives. Each of the hybrid's top passages gains
`weight * maxsim`. Measured in eval/README.md ("Retrieval quality: ablations").

The passages' token vectors come from one of two places:

- an index built with `newsdesk index --late-interaction` stores them, one sign bit per
  dimension (48 bytes a token, `TokenSigns`): a search reads its top passages' bits and takes
  the query's token vectors from the model run that gives its vector (a few ms more a
  search). MaxSim against sign vectors keeps nearly all of the gain (SciFact train +0.0086
  of +0.0093, RealTimeQA dev level, as with float vectors), where product quantisation at
  64 bytes kept less (+0.0068);
- otherwise the top passages are encoded again at query time (0.16-0.65 s on 2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.errors import CorruptIndex

SIGNS_NAME = "token-signs.npy"  # uint8 [tokens, dimension / 8]: every chunk's token vectors' sign bits
SIGN_OFFSETS_NAME = "token-offsets.npy"  # int64 [chunks + 1]: chunk i's tokens are rows offsets[i]:offsets[i+1]
SIGNS_FORMAT = "sign-bits-v1"


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedder that can also return each text's token vectors (L2-normalised, special tokens left out)."""

    def embed_tokens(self, texts: Sequence[str]) -> list[np.ndarray]: ...


def maxsim(query: np.ndarray, passages: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query's token vectors [q, d] against each passage's [p_i, d]; 0 for an empty side."""
    if len(query) == 0 or not passages:
        return np.zeros(len(passages), dtype=np.float64)
    lengths = [len(p) for p in passages]
    scores = np.zeros(len(passages), dtype=np.float64)
    filled = [i for i, n in enumerate(lengths) if n]
    if filled:
        stacked = np.vstack([passages[i] for i in filled]).astype(np.float32, copy=False)
        sims = stacked @ query.astype(np.float32, copy=False).T  # [all passage tokens, query tokens]
        bounds = np.cumsum([0] + [lengths[i] for i in filled])[:-1]
        scores[filled] = np.maximum.reduceat(sims, bounds, axis=0).mean(axis=1)
    return scores


def normalise_rows(tokens: np.ndarray) -> np.ndarray:
    """Token vectors scaled to unit length (a zero vector stays zero)."""
    norms = np.linalg.norm(tokens, axis=1, keepdims=True)
    return (tokens / np.maximum(norms, 1e-9)).astype(np.float32)


def embed_with_tokens(embedder: TokenEmbedder, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sentence vectors and token vectors of `texts`: in one model run where the embedder offers it."""
    both = getattr(embedder, "embed_with_tokens", None)
    if both is not None:
        return both(texts)  # type: ignore[no-any-return]
    return embedder.embed(texts), embedder.embed_tokens(texts)  # type: ignore[attr-defined]


def pack_signs(tokens: np.ndarray) -> np.ndarray:
    """One text's token vectors [n, d] as sign bits [n, d / 8] (a bit set where the value is positive)."""
    return np.packbits(np.asarray(tokens) > 0, axis=1)


def unpack_signs(bits: np.ndarray, dimension: int) -> np.ndarray:
    """Sign bits [n, d / 8] as unit vectors [n, d] of +-1/sqrt(d): what MaxSim compares with the query's tokens."""
    signs = np.unpackbits(bits, axis=1, count=dimension).astype(np.float32)
    return (signs * 2.0 - 1.0) / np.float32(np.sqrt(dimension))


def write_token_signs(directory: Path, signs: Sequence[np.ndarray], dimension: int) -> dict[str, object]:
    """Store every chunk's packed sign bits (row i of `signs` is chunk i) in `directory`; the manifest's figures."""
    width = (dimension + 7) // 8
    offsets = np.zeros(len(signs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in signs], out=offsets[1:])
    out = np.lib.format.open_memmap(directory / SIGNS_NAME, mode="w+", dtype=np.uint8, shape=(int(offsets[-1]), width))
    for i, chunk in enumerate(signs):
        if len(chunk):
            out[offsets[i] : offsets[i + 1]] = chunk
    out.flush()
    del out
    np.save(directory / SIGN_OFFSETS_NAME, offsets)
    return {"format": SIGNS_FORMAT, "tokens": int(offsets[-1]), "bytes": int(offsets[-1]) * width}


class TokenSigns:
    """The stored sign bits of an index's chunks, mapped from disk (read only for the passages asked for)."""

    def __init__(self, directory: Path, chunks: int, dimension: int) -> None:
        try:
            self.bits = np.load(directory / SIGNS_NAME, mmap_mode="r")
            self.offsets = np.load(directory / SIGN_OFFSETS_NAME)
        except (OSError, ValueError) as exc:
            raise CorruptIndex(
                f"{directory}: the stored token vectors cannot be read ({exc}); rebuild the index."
            ) from None
        if (
            self.bits.ndim != 2 or self.bits.shape[1] != (dimension + 7) // 8 or self.offsets.shape != (chunks + 1,)
            or self.offsets[0] != 0 or self.offsets[-1] != len(self.bits) or np.any(np.diff(self.offsets) < 0)
        ):
            raise CorruptIndex(f"{directory}: the stored token vectors do not match the index's chunks; rebuild it.")
        self.dimension = dimension

    def passages(self, positions: Sequence[int]) -> list[np.ndarray]:
        """Each chunk's token vectors, as unit sign vectors."""
        return [
            unpack_signs(np.asarray(self.bits[self.offsets[p] : self.offsets[p + 1]]), self.dimension)
            for p in positions
        ]
