"""Load a published index and search it: dense, lexical, or both fused."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Literal, get_args

import faiss
import numpy as np

from indexer.analysis import analyze, terms_with_offsets
from indexer.chunking import ChunkerConfig, embedding_text
from indexer.corpus import Article
from indexer.embedding import Embedder
from indexer.errors import CorruptIndex, InvalidQuery
from indexer.late_interaction import SIGNS_FORMAT, TokenEmbedder, TokenSigns, maxsim, token_ids
from indexer.lexical import LexicalIndex
from indexer.manifest import LEXICAL_DIR, STORE_NAME, VECTORS_NAME, Manifest
from indexer.publish import current_build
from indexer.store import ChunkRow, ChunkStore
from indexer.vector_index import read_vector_index, search_vectors

Mode = Literal["hybrid", "dense", "lexical"]
Fusion = Literal["additive", "zscore", "convex", "rrf"]
MODES: tuple[str, ...] = get_args(Mode)
RRF_K = 60
log = logging.getLogger(__name__)
LATE_DEPTH = 40  # passages re-scored when late interaction is turned on (tuned on SciFact train, RealTimeQA dev)
PLAIN_LATE_DEPTH, PLAIN_LATE_WEIGHT = 20, 0.75  # the same for MaxSim as a plain mean (see default_config)


@dataclass(frozen=True)
class SearchConfig:
    """How hybrid search fuses its two sides.

    The default, "additive", scores a passage as its cosine to the query plus
    `lexical_weight` times its BM25 score over the query's BM25 ceiling (the score of a
    passage holding every query term at saturation), i.e. plus how much of the query,
    idf-weighted, it matches. Both terms have a fixed scale, so nothing is normalised
    per query: a corpus where every passage is about the same thing (small cosine gaps)
    leans on the words, and a paraphrased question that BM25 half matches leans on the
    embedding. It won the ablations in eval/README.md ("Retrieval quality: ablations"),
    tuned on SciFact train and RealTimeQA dev together. "convex" (min-max, dense weight
    `alpha`; 0.5 was the fusion shipped before, and beat RRF on SciFact train), "zscore"
    and "rrf" remain for comparison. The Q&A path reads the hybrid score as a feature and
    its threshold was calibrated on min-max scores: re-run its calibration (eval/README.md).
    """

    fusion: Fusion = "additive"
    lexical_weight: float = 1.0  # "additive": cosine + lexical_weight * BM25 / ceiling
    alpha: float = 0.5  # "convex" and "zscore": weight of the dense side
    depth: int = 100  # candidates taken from each side before fusion
    # "additive" only: the fused top `late_depth` passages gain late_weight * MaxSim of the
    # model's token vectors (indexer/late_interaction.py), its query tokens weighted by idf where
    # the index stores its word pieces' frequencies. LATE_DEPTH and the weight were tuned on
    # SciFact train and RealTimeQA dev (eval/README.md, "Late interaction"). Off here (0);
    # `SearchIndex.load` without a config turns it on for an index that stores token vectors
    # (`newsdesk index` builds one by default), where it costs a few milliseconds a search
    # (re-encoding the passages instead, on an index without them: 0.16-0.65 s at depth 20).
    late_depth: int = 0
    late_weight: float = 1.5

    def __post_init__(self) -> None:
        if self.fusion not in get_args(Fusion):
            raise ValueError(f"Unknown fusion {self.fusion!r}; use one of: {', '.join(get_args(Fusion))}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha (the dense side's weight) must be between 0 and 1.")
        if not 0.0 <= self.lexical_weight <= 10.0:
            raise ValueError("lexical_weight must be between 0 and 10.")
        if self.depth < 1:
            raise ValueError("depth must be a positive number of candidates.")
        if not isinstance(self.late_depth, int) or not 0 <= self.late_depth <= 1000:
            raise ValueError("late_depth (passages re-scored by late interaction) must be between 0 and 1000.")
        if not 0.0 <= self.late_weight <= 10.0:
            raise ValueError("late_weight must be between 0 and 10.")

    @property
    def late_interaction(self) -> bool:
        """Whether hybrid search re-scores its top passages with token vectors."""
        return self.fusion == "additive" and self.late_depth > 0 and self.late_weight > 0


def _tokens_key(query: str) -> str:
    """The query-cache key of a query's token vectors (no query holds NUL: validate_query refuses it)."""
    return f"\0tokens\0{query}"


def default_config(manifest: Manifest, late_depth: int | None = None) -> SearchConfig:
    """The defaults for this index: late interaction on where it stores token vectors, weighted
    as its MaxSim can be. `late_depth` (a server's setting) overrides how many passages are
    re-scored (0: off) and keeps the weight that suits the index."""
    stored = manifest.late_interaction
    if stored.get("format") == SIGNS_FORMAT:  # idf-weighted MaxSim
        return SearchConfig(late_depth=LATE_DEPTH if late_depth is None else late_depth)
    if not stored and not late_depth:
        return SearchConfig()  # off: no token vectors stored, and none asked for
    # MaxSim as a plain mean (an index of PLAIN_SIGNS_FORMAT, or passages encoded again at search
    # time), at the settings it was measured with: at 40 passages and weight 1.5 it fell below no
    # late interaction on RealTimeQA dev.
    return SearchConfig(late_depth=PLAIN_LATE_DEPTH if late_depth is None else late_depth,
                        late_weight=PLAIN_LATE_WEIGHT)


# C0 controls other than tab and line breaks, DEL, and C1 controls other than NEL (a line break).
CONTROL_CHARS = r"\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
_NOT_TEXT = re.compile(rf"[{CONTROL_CHARS}\ud800-\udfff]")  # also lone surrogates (JSON's "\ud800")
# Unicode categories that carry nothing to search for: separators, controls, format characters
# (zero-width space, BOM), unassigned and private-use code points, surrogates, combining marks.
_NO_CONTENT = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cn", "Co", "Cs", "Mn", "Me", "Mc"})
SOURCE_ADVICE = "leave it out to search every source."
EMPTY_SOURCE = f"source is empty; {SOURCE_ADVICE}"


def text_problem(value: str, field: str) -> str | None:
    """Why `value` is not plain text (a control character, an unpaired surrogate), or None."""
    found = _NOT_TEXT.search(value)
    if found is None:
        return None
    char = ord(found.group())
    what = "half of a UTF-16 surrogate pair" if 0xD800 <= char <= 0xDFFF else "a control character"
    return f"{field} contains U+{char:04X}, {what}, which is not text; send plain text."


@dataclass(frozen=True)
class Filters:
    """Restrict results by article source (case-insensitive) and date range (inclusive)."""

    source: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def __post_init__(self) -> None:
        if self.source is not None and not self.source.strip():
            raise InvalidQuery("source", EMPTY_SOURCE)
        if self.source is not None and (problem := text_problem(self.source, "source")):
            raise InvalidQuery("source", problem)
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidQuery("date_from", "date_from must not be after date_to")

    @property
    def active(self) -> bool:
        return bool(self.source or self.date_from or self.date_to)


@dataclass(frozen=True)
class Citation:
    article_id: str
    title: str
    source: str | None
    date: str | None
    url: str | None
    start: int
    end: int


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    chunk_id: str
    text: str
    citation: Citation
    highlights: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["highlights"] = [{"start": s, "end": e} for s, e in self.highlights]
        return data


class SearchIndex:
    """A loaded index. Thread-safe for concurrent searches."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        store: ChunkStore,
        vectors: faiss.Index,
        lexical: LexicalIndex,
        embedder: Embedder,
        config: SearchConfig,
        token_signs: TokenSigns | None = None,
    ) -> None:
        self.path = path
        self.token_signs = token_signs  # the chunks' stored token vectors (late interaction), if any
        self.manifest = manifest
        self.store = store
        self.vectors = vectors
        self.lexical = lexical
        self.embedder = embedder
        self.config = config
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._warned_ids = False
        self._cache_lock = threading.Lock()
        self._sources = np.array([(s or "").casefold() for s in store.article_sources], dtype=object)
        self._dates = np.array([d or "" for d in store.article_dates], dtype=object)
        # The chunker the index was built with: whether the title led each embedded passage.
        known = {f.name for f in fields(ChunkerConfig)}
        self._chunker = ChunkerConfig(**{k: v for k, v in manifest.chunker.items() if k in known})

    @classmethod
    def load(
        cls, root: Path | str, embedder: Embedder, config: SearchConfig | None = None, late_depth: int | None = None
    ) -> SearchIndex:
        """Load the published index under `root`, refusing a mismatched or damaged one.

        Without `config` it searches with the index's defaults (`default_config`), re-scoring
        `late_depth` passages by late interaction where that is given."""
        build = current_build(Path(root))
        manifest = Manifest.read(build)
        manifest.check_compatible(embedder.model_id, embedder.dimension)
        store = _load_store(build / STORE_NAME)
        vectors = _load_vectors(build / VECTORS_NAME)
        chunks = manifest.counts.get("chunks")
        if vectors.ntotal != store.chunk_count or chunks != store.chunk_count or vectors.d != manifest.dimension:
            raise CorruptIndex(
                f"{build}: {vectors.ntotal} vectors ({vectors.d}-d), {store.chunk_count} stored chunks, "
                f"manifest says {chunks} chunks ({manifest.dimension}-d). Rebuild the index with `newsdesk index`."
            )
        try:
            lexical = LexicalIndex.load(build / LEXICAL_DIR, store.chunk_count)
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptIndex(f"{build / LEXICAL_DIR} cannot be read ({exc}); rebuild the index.") from None
        signs = (
            TokenSigns(build, store.chunk_count, manifest.dimension, str(manifest.late_interaction.get("format")))
            if manifest.late_interaction else None
        )
        config = config or default_config(manifest, late_depth)
        if config.late_interaction and not isinstance(embedder, TokenEmbedder):
            log.warning("Late interaction is on but %s gives no token vectors; hybrid search runs without it.",
                        type(embedder).__name__)
        return cls(build, manifest, store, vectors, lexical, embedder, config, signs)

    @property
    def index_id(self) -> str:
        return self.manifest.index_id

    def article(self, article_id: str) -> Article | None:
        return self.store.article(article_id)

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        filters: Filters | None = None,
        config: SearchConfig | None = None,
    ) -> list[Hit]:
        """The top `k` passages for `query`, best first, each with its citation.

        `config` overrides the index's fusion settings for this call (the Q&A path keeps the
        fusion its threshold was calibrated on).
        """
        positions, scores = self.rank(query, k, mode, filters, config=config)
        rows = self.store.chunks(positions.tolist())
        terms = set(analyze(query))
        return [
            _hit(rank, float(score), row, terms)
            for rank, (row, score) in enumerate(zip(rows, scores, strict=True), 1)
        ]

    def search_articles(self, query: str, k: int = 10, mode: str = "hybrid") -> list[tuple[str, float]]:
        """The top `k` articles, each scored by its best chunk."""
        depth = max(k * 3, self.config.depth)  # several chunks may belong to one article
        positions, scores = self.rank(query, depth, mode, None, depth=depth)
        best: dict[str, float] = {}
        for pos, score in zip(positions.tolist(), scores.tolist(), strict=True):
            article_id = self.store.article_ids[self.store.chunk_article[pos]]
            if article_id not in best:
                best[article_id] = score
        return list(best.items())[:k]

    def rank(
        self,
        query: str,
        k: int,
        mode: str,
        filters: Filters | None = None,
        depth: int | None = None,
        config: SearchConfig | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions and scores of the top `k` chunks (fusion from `config`, else the index's)."""
        config = config or self.config
        query = validate_query(query, k, mode)
        mask = self._mask(filters) if filters and filters.active else None
        depth = max(depth or config.depth, k)
        if mode == "lexical":
            return _top(self._lexical_scores(query, mask), k, positive=True)
        late = mode == "hybrid" and config.late_interaction and isinstance(self.embedder, TokenEmbedder)
        if late and self.token_signs is not None:
            self._embed_query_with_tokens(query)  # one model run for the vector and the token vectors
        dense_pos, dense_scores = self._dense(query, depth, mask)
        if mode == "dense":
            return dense_pos[:k], dense_scores[:k]
        lexical_all = self._lexical_scores(query, mask)
        lexical_pos, _ = _top(lexical_all, depth, positive=True)
        wanted = max(k, config.late_depth) if late else k
        positions, scores = self._fuse(query, dense_pos, dense_scores, lexical_pos, lexical_all, wanted, config)
        if late:
            positions, scores = self._late_interaction(query, positions, scores, config)
        return positions[:k], scores[:k]

    def embed_query(self, query: str) -> np.ndarray:
        """The query's vector, from a small LRU cache when it was asked before."""
        return self._cached(query, lambda: self.embedder.embed([query])[0])

    def _query_tokens(self, query: str) -> np.ndarray:
        """The query's token vectors (late interaction), cached like its vector."""
        return self._cached(_tokens_key(query), lambda: self.embedder.embed_tokens([query])[0])  # type: ignore[attr-defined]

    def _embed_query_with_tokens(self, query: str) -> None:
        """Cache the query's vector and token vectors from one model run, where the embedder offers one."""
        both = getattr(self.embedder, "embed_with_tokens", None)
        with self._cache_lock:
            done = query in self._query_cache and _tokens_key(query) in self._query_cache
        if both is None or done:
            return
        vectors, tokens = both([query])
        self._remember(query, vectors[0])
        self._remember(_tokens_key(query), tokens[0])

    def _cached(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        with self._cache_lock:
            cached = self._query_cache.get(key)
            if cached is not None:
                self._query_cache.move_to_end(key)
                return cached
        value = compute()
        self._remember(key, value)
        return value

    def _remember(self, key: str, value: np.ndarray) -> None:
        with self._cache_lock:
            self._query_cache[key] = value
            self._query_cache.move_to_end(key)
            if len(self._query_cache) > 1024:
                self._query_cache.popitem(last=False)

    def _dense(self, query: str, depth: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        n = self.vectors.ntotal
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        allowed = np.flatnonzero(mask) if mask is not None else None
        return search_vectors(self.vectors, self.embed_query(query), min(depth, n), allowed)

    def _lexical_scores(self, query: str, mask: np.ndarray | None) -> np.ndarray:
        scores = self.lexical.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, 0.0).astype(np.float32)
        return scores

    def _fuse(
        self,
        query: str,
        dense_pos: np.ndarray,
        dense_scores: np.ndarray,
        lexical_pos: np.ndarray,
        lexical_all: np.ndarray,
        k: int,
        config: SearchConfig,
    ) -> tuple[np.ndarray, np.ndarray]:
        if config.fusion == "rrf":
            fused: dict[int, float] = {}
            for ranked in (dense_pos, lexical_pos):
                for rank, pos in enumerate(ranked.tolist()):
                    fused[pos] = fused.get(pos, 0.0) + 1.0 / (RRF_K + rank + 1)
            candidates = np.fromiter(fused, dtype=np.int64, count=len(fused))
            combined = np.fromiter(fused.values(), dtype=np.float64, count=len(fused))
        else:
            candidates = np.union1d(dense_pos, lexical_pos).astype(np.int64)
            if candidates.size == 0:
                return candidates, np.zeros(0, dtype=np.float32)
            # Every candidate gets both real scores (a dense-only hit still has a BM25
            # score and vice versa), so missing values never distort the fusion.
            dense = self._dense_scores_of(query, candidates, dense_pos, dense_scores)
            lexical = lexical_all[candidates].astype(np.float64)
            if config.fusion == "additive":
                # Fixed scales on both sides (cosine; share of the query matched), so no
                # per-query normalisation can blow a tiny cosine gap up to the full range.
                ceiling = self.lexical.ceiling(query)
                coverage = lexical / ceiling if ceiling > 0 else np.zeros_like(lexical)
                combined = dense + config.lexical_weight * coverage
            else:
                normalise = _zscore if config.fusion == "zscore" else _minmax
                alpha = config.alpha
                combined = alpha * normalise(dense) + (1 - alpha) * normalise(lexical)
        order = np.argsort(-combined, kind="stable")[:k]
        return candidates[order], combined[order].astype(np.float32)

    def _late_interaction(
        self, query: str, positions: np.ndarray, scores: np.ndarray, config: SearchConfig
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top `late_depth` passages re-scored: fused score + late_weight * MaxSim, the rest after them.

        MaxSim is clamped at 0, so a re-scored passage never falls below one that was not.
        """
        head = positions[: config.late_depth]
        if head.size == 0:
            return positions, scores
        weights = None
        if self.token_signs is not None:  # stored: read the passages' bits, encode only the query
            passages = self.token_signs.passages(head.tolist())
            query_tokens = self._query_tokens(query)
            ids = token_ids(self.embedder, [query])
            if ids is not None and len(ids[0]) != len(query_tokens) and not self._warned_ids:
                self._warned_ids = True  # once: MaxSim falls back to the plain mean for such a query
                log.warning("%s gives %d word-piece ids for %d token vectors; MaxSim weighs this query's "
                            "tokens alike", type(self.embedder).__name__, len(ids[0]), len(query_tokens))
            weights = self.token_signs.weights(ids[0] if ids else None)  # idf of each query word piece
        else:  # encoded again, the query in the same call
            rows = self.store.chunks(head.tolist())
            texts = [embedding_text(row.title, row.text, self._chunker) for row in rows]
            query_tokens, *passages = self.embedder.embed_tokens([query, *texts])  # type: ignore[attr-defined]
        late = np.maximum(maxsim(query_tokens, passages, weights), 0.0)
        rescored = scores[: head.size].astype(np.float64) + config.late_weight * late
        order = np.argsort(-rescored, kind="stable")
        return (
            np.concatenate([head[order], positions[head.size :]]),
            np.concatenate([rescored[order], scores[head.size :]]).astype(np.float32),
        )

    def _dense_scores_of(
        self, query: str, candidates: np.ndarray, dense_pos: np.ndarray, dense_scores: np.ndarray
    ) -> np.ndarray:
        known = dict(zip(dense_pos.tolist(), dense_scores.tolist(), strict=True))
        missing = [int(p) for p in candidates.tolist() if p not in known]
        if missing:
            query_vector = self.embed_query(query)
            stored = np.vstack([self.vectors.reconstruct(p) for p in missing])
            known.update(zip(missing, (stored @ query_vector).tolist(), strict=True))
        return np.array([known[int(p)] for p in candidates.tolist()], dtype=np.float64)

    def _mask(self, filters: Filters) -> np.ndarray:
        """Boolean mask over chunks: True where the chunk's article passes the filters."""
        allowed = np.ones(len(self._sources), dtype=bool)
        if filters.source:
            allowed &= self._sources == filters.source.casefold()
        if filters.date_from:
            allowed &= (self._dates != "") & (self._dates >= filters.date_from.isoformat())
        if filters.date_to:
            allowed &= (self._dates != "") & (self._dates <= filters.date_to.isoformat())
        return allowed[self.store.chunk_article]


def validate_question(question: str) -> str:
    """The question, stripped; InvalidQuery if it is empty or not text."""
    return _text_or_raise(question, "question", "The question", "type a question about the articles")


def validate_query(query: str, k: int = 10, mode: str = "hybrid") -> str:
    """The query, stripped; InvalidQuery if it is empty or not text, or k or mode is bad."""
    query = _text_or_raise(query, "q", "The query", "type some words to search for")
    if mode not in MODES:
        raise InvalidQuery("mode", f"Unknown mode {mode!r}; use one of: {', '.join(MODES)}.")
    if not isinstance(k, int) or k < 1:
        raise InvalidQuery("k", "k must be a positive integer.")
    return query


def _text_or_raise(value: str, field: str, name: str, advice: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidQuery(field, f"{name} is empty; {advice}.")
    if problem := text_problem(value, name):
        raise InvalidQuery(field, problem)
    if not any(unicodedata.category(ch) not in _NO_CONTENT for ch in value):
        # A zero-width space or a lone accent would otherwise "match" whatever ranks first.
        raise InvalidQuery(field, f"{name} has no letters, digits or symbols, only invisible or combining "
                                  f"characters; {advice}.")
    return value.strip()


def _top(scores: np.ndarray, k: int, positive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the k highest scores (only those > 0 if `positive`)."""
    candidates = np.flatnonzero(scores > 0) if positive else np.arange(scores.size)
    if candidates.size > k:
        part = np.argpartition(-scores[candidates], k - 1)[:k]
        candidates = candidates[part]
    order = np.argsort(-scores[candidates], kind="stable")
    chosen = candidates[order].astype(np.int64)
    return chosen, scores[chosen]


def _zscore(values: np.ndarray) -> np.ndarray:
    """Standard scores over the candidates; all zeros when they are all equal (that side cannot rank)."""
    spread = float(values.std())
    if spread < 1e-12:
        return np.zeros_like(values)
    return (values - values.mean()) / spread


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.ones_like(values) if high > 0 else np.zeros_like(values)
    return (values - low) / (high - low)


def _hit(rank: int, score: float, row: ChunkRow, terms: set[str]) -> Hit:
    citation = Citation(row.article_id, row.title, row.source, row.date, row.url, row.start, row.end)
    return Hit(rank, score, row.chunk_id, row.text, citation, _highlights(row, terms))


def _highlights(row: ChunkRow, terms: set[str]) -> list[tuple[int, int]]:
    """Article offsets of the query's terms inside the passage, adjacent matches merged."""
    spans: list[tuple[int, int]] = []
    for term, start, end in terms_with_offsets(row.text):
        if term in terms:
            start, end = row.start + start, row.start + end
            if spans and start <= spans[-1][1] + 1:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
    return spans


def _load_store(path: Path) -> ChunkStore:
    import sqlite3

    if not path.is_file():
        raise CorruptIndex(f"{path} is missing; rebuild the index with `newsdesk index`.")
    try:
        return ChunkStore(path)
    except sqlite3.DatabaseError as exc:
        raise CorruptIndex(f"{path} is damaged ({exc}); rebuild the index with `newsdesk index`.") from None


def _load_vectors(path: Path) -> faiss.Index:
    if not path.is_file():
        raise CorruptIndex(f"{path} is missing; rebuild the index with `newsdesk index`.")
    try:
        return read_vector_index(path)
    except RuntimeError as exc:
        # FAISS's message is a C++ assertion ending in a stale errno ("No such file or directory"
        # for a short read); keep only the byte counts it gives, if any.
        short = re.search(r"read error in .*?: (\d+) != (\d+)", str(exc))
        detail = f"only {short.group(1)} of {short.group(2)} bytes could be read" if short else "FAISS cannot read it"
        raise CorruptIndex(f"{path} is truncated or damaged ({detail}); rebuild the index.") from None
