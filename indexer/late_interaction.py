"""Late-interaction re-scoring of the hybrid's top passages with the embedding model's token vectors.

MiniLM mean-pools its token vectors into one passage vector, which averages everything a
passage says. Its token vectors also say which words of the passage answer which words of
the query: MaxSim (ColBERT's score) lets each query token find its closest passage token,

    maxsim(q, p) = mean over query tokens t of max over passage tokens u of cos(t, u),

a soft term match (a query word can meet a related passage word) that neither BM25's exact
stems nor the single averaged cosine gives. Each of the hybrid's top passages gains
`weight * maxsim`. Measured in eval/README.md ("Retrieval quality: ablations").

Where the index knows how many of its chunks hold each word piece, the mean over query
tokens is weighted by each token's idf (BM25's, over chunks), so "the", "of" and "?" count
for little and the rare words of the query for much. Re-scoring the fused top 40 chunks with
weight 1.5 (tuned on SciFact train and RealTimeQA dev, sign bits, packaged model) gained
+0.0157 / +0.0032 nDCG@10 there, against +0.0092 / -0.0033 for the plain mean
(eval/README.md, "idf-weighted MaxSim").

The passages' token vectors come from one of two places:

- `newsdesk index` stores them (unless --no-late-interaction), one sign bit per dimension
  (48 bytes a token, `TokenSigns`), with the word pieces' chunk frequencies: a search reads
  its top passages' bits and takes the query's token vectors from the model run that gives
  its vector (a few ms more a search). MaxSim against sign vectors keeps nearly all of the
  gain of float vectors (SciFact train +0.0086 of +0.0093, RealTimeQA dev level, unweighted),
  where product quantisation at 64 bytes kept less (+0.0068);
- otherwise the top passages are encoded again at query time (0.16-0.65 s at depth 20), and
  the query tokens weigh alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.errors import CorruptIndex

SIGNS_NAME = "token-signs.npy"  # uint8 [tokens, dimension / 8]: every chunk's token vectors' sign bits
SIGN_OFFSETS_NAME = "token-offsets.npy"  # int64 [chunks + 1]: chunk i's tokens are rows offsets[i]:offsets[i+1]
SPOOL_NAME = "token-signs.spool"  # during a build: sign bits in the order they were embedded
DF_NAME = "token-df.npy"  # int64 [2, pieces]: word-piece ids (ascending) and how many chunks hold each
# v2: the index also stores its word pieces' chunk frequencies (DF_NAME), for idf-weighted MaxSim.
SIGNS_FORMAT = "sign-bits-v2"
PLAIN_SIGNS_FORMAT = "sign-bits-v1"  # sign bits only: MaxSim is a plain mean


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedder that can also return each text's token vectors (L2-normalised, special tokens left out)."""

    def embed_tokens(self, texts: Sequence[str]) -> list[np.ndarray]: ...


def token_ids(embedder: object, texts: Sequence[str]) -> list[np.ndarray] | None:
    """Each text's word-piece ids, row for row with its token vectors; None if the embedder cannot say."""
    ids = getattr(embedder, "token_ids", None)
    return None if ids is None else ids(texts)  # type: ignore[no-any-return]


def maxsim(query: np.ndarray, passages: Sequence[np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
    """MaxSim of one query's token vectors [q, d] against each passage's [p_i, d]; 0 for an empty side.

    `weights` (one per query token, finite, not all zero) makes the mean over query tokens a weighted one.
    """
    if len(query) == 0 or not passages:
        return np.zeros(len(passages), dtype=np.float64)
    if weights is not None and (
        len(weights) != len(query) or not np.all(np.isfinite(weights)) or not np.any(weights > 0)
    ):
        weights = None
    lengths = [len(p) for p in passages]
    scores = np.zeros(len(passages), dtype=np.float64)
    filled = [i for i, n in enumerate(lengths) if n]
    if filled:
        stacked = np.vstack([passages[i] for i in filled]).astype(np.float32, copy=False)
        sims = stacked @ query.astype(np.float32, copy=False).T  # [all passage tokens, query tokens]
        bounds = np.cumsum([0] + [lengths[i] for i in filled])[:-1]
        best = np.maximum.reduceat(sims, bounds, axis=0)  # [passages, query tokens]
        scores[filled] = best.mean(axis=1) if weights is None else best @ weights / weights.sum()
    return scores


def document_frequencies(ids_per_chunk: Iterable[np.ndarray], block: int = 10_000) -> np.ndarray:
    """[2, pieces]: each word piece's id (ascending) and how many chunks hold it."""
    parts: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            ids, counts = np.unique(np.concatenate(pending), return_counts=True)
            parts.append(np.stack([ids, counts]))
            pending.clear()

    for ids in ids_per_chunk:
        pending.append(np.unique(np.asarray(ids, dtype=np.int64)))
        if len(pending) == block:
            flush()
    flush()
    if not parts:
        return np.zeros((2, 0), dtype=np.int64)
    merged = np.concatenate(parts, axis=1)
    order = np.argsort(merged[0], kind="stable")
    ids, first = np.unique(merged[0, order], return_index=True)
    return np.stack([ids, np.add.reduceat(merged[1, order], first)]).astype(np.int64)


def text_frequencies(embedder: object, texts: Sequence[str], block: int = 10_000) -> np.ndarray | None:
    """`document_frequencies` of the word pieces of `texts` (tokenised a block at a time); None if
    the embedder cannot give word-piece ids, and MaxSim is then a plain mean."""
    ids_of = getattr(embedder, "token_ids", None)
    if ids_of is None:
        return None
    blocks = (ids_of(texts[start : start + block]) for start in range(0, len(texts), block))
    return document_frequencies(ids for piece_ids in blocks for ids in piece_ids)


def signs_format(embedder: object) -> str:
    """The token-vector format an index built with `embedder` stores: with word-piece frequencies
    (idf-weighted MaxSim) where it can give word-piece ids."""
    return SIGNS_FORMAT if getattr(embedder, "token_ids", None) is not None else PLAIN_SIGNS_FORMAT


def idf_weights(frequencies: np.ndarray, chunks: int, ids: np.ndarray) -> np.ndarray:
    """BM25's idf over `chunks` chunks of each query word piece in `ids` (a piece no chunk holds: the highest)."""
    known, counts = frequencies
    ids = np.asarray(ids, dtype=np.int64)
    df = np.zeros(len(ids), dtype=np.float64)
    if len(known):
        at = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        found = known[at] == ids
        df[found] = counts[at[found]]
    return np.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


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


def write_token_signs(
    directory: Path, signs: Sequence[np.ndarray] | SignSpool, dimension: int, frequencies: np.ndarray | None
) -> dict[str, object]:
    """Store every chunk's packed sign bits (row i of `signs` is chunk i) and the word pieces' chunk
    frequencies (`document_frequencies`; None: there are none, PLAIN_SIGNS_FORMAT) in `directory`;
    the manifest's figures."""
    width = (dimension + 7) // 8
    offsets = np.zeros(len(signs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in signs], out=offsets[1:])
    out = np.lib.format.open_memmap(directory / SIGNS_NAME, mode="w+", dtype=np.uint8, shape=(int(offsets[-1]), width))
    for i in range(len(signs)):
        chunk = signs[i]
        if len(chunk):
            out[offsets[i] : offsets[i + 1]] = chunk
    out.flush()
    del out
    np.save(directory / SIGN_OFFSETS_NAME, offsets)
    if frequencies is not None:
        np.save(directory / DF_NAME, np.asarray(frequencies, dtype=np.int64).reshape(2, -1))
    stored = SIGNS_FORMAT if frequencies is not None else PLAIN_SIGNS_FORMAT
    return {"format": stored, "tokens": int(offsets[-1]), "bytes": int(offsets[-1]) * width}


class SignSpool:
    """Every chunk's packed sign bits as a build gets them, in any order, kept in a file of the
    build directory rather than in memory (a large corpus has gigabytes of them); read back in
    chunk order by `write_token_signs`, which fails on a chunk that never got any. `chunks` is
    how many there will be; the spool grows for more (the Ray engine numbers them as they arrive)."""

    def __init__(self, directory: Path, chunks: int, dimension: int) -> None:
        self.path = directory / SPOOL_NAME
        self.width = (dimension + 7) // 8
        self.start = np.full(chunks, -1, dtype=np.int64)  # first row of each chunk in the spool
        self.count = np.zeros(chunks, dtype=np.int64)
        self._size = chunks
        self._rows = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by the first read or `remove`)
        self._read: np.ndarray | None = None

    def __len__(self) -> int:
        return self._size

    def __setitem__(self, chunk: int, bits: np.ndarray) -> None:
        bits = np.ascontiguousarray(bits, dtype=np.uint8)
        if bits.ndim != 2 or bits.shape[1] != self.width:
            raise ValueError(f"sign bits of shape {bits.shape} for rows of {self.width} bytes")
        if chunk >= len(self.start):  # grow, doubling
            extra = max(chunk + 1, 2 * len(self.start)) - len(self.start)
            self.start = np.concatenate([self.start, np.full(extra, -1, dtype=np.int64)])
            self.count = np.concatenate([self.count, np.zeros(extra, dtype=np.int64)])
        self._size = max(self._size, chunk + 1)
        self._file.write(bits.tobytes())
        self.start[chunk], self.count[chunk] = self._rows, len(bits)
        self._rows += len(bits)

    def __getitem__(self, chunk: int) -> np.ndarray:
        if not 0 <= chunk < self._size:
            raise IndexError(chunk)
        if self.start[chunk] < 0:
            raise ValueError(f"chunk {chunk} got no token vectors")
        if self._read is None:
            self._file.close()
            shape = (self._rows, self.width)
            empty = self._rows == 0  # a file of 0 bytes cannot be mapped
            self._read = np.zeros(shape, np.uint8) if empty else np.memmap(self.path, np.uint8, "r", shape=shape)
        return self._read[self.start[chunk] : self.start[chunk] + self.count[chunk]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def renumber(self, order: np.ndarray) -> None:
        """Chunk i becomes the chunk numbered order[i] so far (the Ray engine numbers chunks as they
        arrive, then puts them in article order); nothing is copied."""
        self.start, self.count = self.start[: self._size][order], self.count[: self._size][order]

    def remove(self) -> None:
        """Delete the spool file (once the build has written its token vectors, or failed)."""
        self._file.close()
        self._read = None
        self.path.unlink(missing_ok=True)


def _valid_frequencies(frequencies: np.ndarray, chunks: int) -> bool:
    """Integer [2, pieces]: ascending non-negative ids, each held by 1 to `chunks` chunks."""
    return (
        frequencies.ndim == 2 and frequencies.shape[0] == 2 and np.issubdtype(frequencies.dtype, np.integer)
        and not np.any(np.diff(frequencies[0]) <= 0)
        and (frequencies.shape[1] == 0 or (frequencies[0, 0] >= 0 and frequencies[1].min() >= 1
                                          and frequencies[1].max() <= chunks))
    )


class TokenSigns:
    """The stored sign bits of an index's chunks, mapped from disk (read only for the passages asked for)."""

    def __init__(self, directory: Path, chunks: int, dimension: int, stored_format: str = SIGNS_FORMAT) -> None:
        """`stored_format` is the manifest's: a PLAIN_SIGNS_FORMAT index has no word-piece frequencies."""
        if stored_format not in (SIGNS_FORMAT, PLAIN_SIGNS_FORMAT):
            raise CorruptIndex(f"{directory}: the token vectors are stored as {stored_format!r}, which this "
                               "version of newsdesk cannot read; rebuild the index with `newsdesk index`.")
        try:
            self.bits = np.load(directory / SIGNS_NAME, mmap_mode="r")
            self.offsets = np.load(directory / SIGN_OFFSETS_NAME)
            self.frequencies = np.load(directory / DF_NAME) if stored_format != PLAIN_SIGNS_FORMAT else None
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            raise CorruptIndex(
                f"{directory}: the stored token vectors cannot be read ({exc}); rebuild the index."
            ) from None
        if (
            self.bits.ndim != 2 or self.bits.shape[1] != (dimension + 7) // 8 or self.offsets.shape != (chunks + 1,)
            or self.offsets[0] != 0 or self.offsets[-1] != len(self.bits) or np.any(np.diff(self.offsets) < 0)
        ):
            raise CorruptIndex(f"{directory}: the stored token vectors do not match the index's chunks; rebuild it.")
        if self.frequencies is not None and not _valid_frequencies(self.frequencies, chunks):
            raise CorruptIndex(f"{directory}: the stored word-piece frequencies are damaged; rebuild the index.")
        self.dimension = dimension
        self.chunks = chunks

    def weights(self, ids: np.ndarray | None) -> np.ndarray | None:
        """The idf weight of each query word piece in `ids`; None (plain MaxSim) where either side is unknown."""
        if ids is None or self.frequencies is None:
            return None
        return idf_weights(self.frequencies, self.chunks, ids)

    def passages(self, positions: Sequence[int]) -> list[np.ndarray]:
        """Each chunk's token vectors, as unit sign vectors."""
        return [
            unpack_signs(np.asarray(self.bits[self.offsets[p] : self.offsets[p + 1]]), self.dimension)
            for p in positions
        ]
