"""Build an index directory from articles: chunk, embed, index, store, publish."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.analysis import ANALYSIS_VERSION
from indexer.chunking import Chunk, Chunker, ChunkerConfig, embedding_text
from indexer.corpus import Article, LoadReport, corpus_fingerprint, load_corpus
from indexer.embedding import Embedder, backend_of
from indexer.embedding_cache import EmbeddingCache, text_key
from indexer.errors import CorpusError, NewsdeskError
from indexer.incremental import Spans, article_key, published_spans
from indexer.ivf import is_ivf
from indexer.late_interaction import (
    SignSpool,
    TokenEmbedder,
    embed_with_tokens,
    pack_signs,
    signs_format,
    text_frequencies,
    write_token_signs,
)
from indexer.lexical import LexicalIndex
from indexer.manifest import LEXICAL_DIR, STORE_NAME, Manifest
from indexer.publish import build_lock, clean_stale_builds, current_build, new_build_dir, publish
from indexer.store import write_store
from indexer.tokens import wordpiece_counter
from indexer.vector_index import choose_factory, write_vector_index

log = logging.getLogger(__name__)

EMBED_BATCH = 256
CACHE_BLOCK = 10_000  # cached vectors read at a time, so a rebuild never loads the whole cache
# An IVF build's embedded vectors, in chunk order, until they are indexed (then removed).
VECTOR_BUFFER_NAME = "embedded-vectors.npy"


@dataclass(frozen=True)
class LexicalConfig:
    """BM25 settings, recorded in the manifest."""

    k1: float = 1.2
    b: float = 0.75
    title_in_chunks: bool = True
    analysis: int = ANALYSIS_VERSION  # an index analysed by an older version is rebuilt, not reused


@dataclass
class BuildResult:
    index_id: str
    path: Path
    articles: int
    chunks: int
    seconds: float
    report: LoadReport = field(default_factory=LoadReport)
    embedded: int = 0  # chunks the embedder computed in this build
    reused: int = 0  # chunks whose vectors came from the embedding cache


def index_corpus(
    corpus: Path,
    root: Path,
    embedder: Embedder,
    chunker: ChunkerConfig | None = None,
    lexical: LexicalConfig | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] = log.info,
    faiss_factory: str | None = None,
    cache: bool = True,
    rebuild: bool = False,
    late_interaction: bool | None = None,
) -> BuildResult:
    """Load the corpus at `corpus` and publish an index of it under `root`.

    When the published index was built from exactly these articles with the same settings,
    nothing is built (unless `rebuild`): the result names the published index. The index
    stores its chunks' token vectors (as sign bits) for late interaction unless
    `late_interaction` is False (None: whenever the embedder gives token vectors).
    """
    started = time.perf_counter()
    articles, report = load_corpus(corpus)
    say(f"Loaded {corpus}: {report.summary()}")
    if not rebuild:
        current = up_to_date(corpus, root, articles, report, embedder, chunker, lexical, faiss_factory, say,
                             late_interaction)
        if current is not None:
            current.seconds = time.perf_counter() - started
            return current
    result = build_index(articles, root, embedder, chunker, lexical, progress, say, report, faiss_factory, cache,
                         late_interaction)
    result.seconds = time.perf_counter() - started
    return result


def up_to_date(
    corpus: Path,
    root: Path,
    articles: Sequence[Article],
    report: LoadReport,
    embedder: Embedder,
    chunker: ChunkerConfig | None = None,
    lexical: LexicalConfig | None = None,
    faiss_factory: str | None = None,
    say: Callable[[str], None] = log.info,
    late_interaction: bool | None = None,
) -> BuildResult | None:
    """The published index as a build result when it already is what a build would give, else None.

    Either engine calls this first; stale builds a killed run left behind are removed either way.
    """
    current = published_match(root, articles, embedder, chunker, lexical, faiss_factory, late_interaction)
    if current is None:
        return None
    with build_lock(root):
        removed = clean_stale_builds(root)
    if removed:
        say(f"Removed {len(removed)} stale build(s) left by an earlier run")
    chunks = current.counts["chunks"]
    say(f"Index {current.index_id} at {root} is up to date with {corpus}; nothing to build (--rebuild forces it)")
    return BuildResult(current.index_id, current_build(root), len(articles), chunks, 0.0, report, reused=chunks)


def published_match(
    root: Path,
    articles: Sequence[Article],
    embedder: Embedder,
    chunker: ChunkerConfig | None = None,
    lexical: LexicalConfig | None = None,
    faiss_factory: str | None = None,
    late_interaction: bool | None = None,
) -> Manifest | None:
    """The published index's manifest if building `articles` with these settings would give the same index."""
    late_interaction = stores_tokens(embedder, late_interaction)
    try:
        manifest = Manifest.read(current_build(root))
    except NewsdeskError:
        return None
    factory = faiss_factory or choose_factory(int(manifest.counts.get("chunks", 0)))
    same = (
        manifest.model_id == embedder.model_id
        and manifest.dimension == embedder.dimension
        and manifest.embedder_backend == backend_of(embedder)  # int8 and fp32 vectors differ slightly
        and manifest.chunker == (chunker or ChunkerConfig()).to_dict()
        and manifest.lexical == asdict(lexical or LexicalConfig())
        and manifest.faiss_factory == factory
        and manifest.late_interaction.get("format") == (signs_format(embedder) if late_interaction else None)
        and manifest.corpus_fingerprint == corpus_fingerprint(list(articles))
    )
    return manifest if same else None


def build_index(
    articles: Sequence[Article],
    root: Path,
    embedder: Embedder,
    chunker: ChunkerConfig | None = None,
    lexical: LexicalConfig | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] = log.info,
    report: LoadReport | None = None,
    faiss_factory: str | None = None,
    cache: bool = True,
    late_interaction: bool | None = None,
) -> BuildResult:
    """Chunk, embed and index `articles` in a new build directory, then publish it atomically.

    With `cache`, vectors are reused from <root>/cache/embeddings.sqlite and new ones stored
    there; `faiss_factory` None picks exact, HNSW or sharded IVF by the number of chunks.
    Unless `late_interaction` is False (None: whenever the embedder gives them), the index also
    stores every chunk's token vectors, as sign bits (48 bytes a token for MiniLM), from the same
    model run as its vector.
    """
    if not articles:
        raise CorpusError("No articles to index: the corpus is empty or every file was skipped.")
    late_interaction = stores_tokens(embedder, late_interaction)
    started = time.perf_counter()
    chunker = chunker or ChunkerConfig()
    lexical = lexical or LexicalConfig()
    report = report or LoadReport(loaded=len(articles))
    with build_lock(root):
        build = start_build(root, say)
        chunks = chunk_articles(articles, chunker, progress, reuse=published_spans(root, chunker))
        say(f"Chunked {len(articles)} articles into {len(chunks)} chunks")
        titles = {a.article_id: a.title for a in articles}
        texts = [embedding_text(titles[c.article_id], c.text, chunker) for c in chunks]
        factory = faiss_factory or choose_factory(len(chunks))
        vectors = vector_buffer(build, len(chunks), embedder.dimension, factory)
        signs = SignSpool(build, len(chunks), embedder.dimension) if late_interaction else None
        try:
            with EmbeddingCache.for_index(root, embedder) if cache else contextlib.nullcontext() as vector_cache:
                embedded = embed_texts(embedder, texts, progress, vector_cache, out=vectors, signs=signs)[1]
            if cache:
                say(f"Embedded {embedded} chunks, reused {len(chunks) - embedded} from the embedding cache")
            write_build(build, articles, chunks, vectors, embedder, chunker, lexical, report, factory, signs=signs)
        finally:
            if signs is not None:
                signs.remove()
        publish(root, build)
        if cache:
            # Only once published: vectors of deleted or edited chunks leave the cache.
            with EmbeddingCache.for_index(root, embedder) as vector_cache:
                vector_cache.keep_only(text_key(t) for t in texts)
    seconds = time.perf_counter() - started
    say(f"Published index {build.name} at {root} ({len(articles)} articles, {len(chunks)} chunks) in {seconds:.1f}s")
    return BuildResult(build.name, build, len(articles), len(chunks), seconds, report, embedded, len(chunks) - embedded)


def stores_tokens(embedder: Embedder, late_interaction: bool | None) -> bool:
    """Whether a build stores token vectors: by default (None) whenever the embedder gives them."""
    if late_interaction is None:
        return isinstance(embedder, TokenEmbedder)
    if late_interaction and not isinstance(embedder, TokenEmbedder):
        raise NewsdeskError(
            f"{type(embedder).__name__} gives no token vectors, so it cannot build a late-interaction index."
        )
    return late_interaction


def start_build(root: Path, say: Callable[[str], None] = log.info) -> Path:
    """Remove leftovers of earlier runs and make the new build's directory; the caller holds build_lock(root)."""
    removed = clean_stale_builds(root)
    if removed:
        say(f"Removed {len(removed)} stale build(s) left by an earlier run")
    return new_build_dir(root)


def vector_buffer(build: Path, count: int, dimension: int, factory: str) -> np.ndarray:
    """Where the embedded vectors wait for indexing: memory for Flat and HNSW, which are built in
    memory anyway; for IVF a file in the build directory that the writer reads shard by shard."""
    if not is_ivf(factory):
        return np.zeros((count, dimension), dtype=np.float32)
    path = build / VECTOR_BUFFER_NAME
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, dimension))


def write_build(
    build: Path,
    articles: Sequence[Article],
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    embedder: Embedder,
    chunker: ChunkerConfig,
    lexical: LexicalConfig,
    report: LoadReport,
    faiss_factory: str | None = None,
    extra: dict[str, object] | None = None,
    signs: Sequence[np.ndarray] | SignSpool | None = None,
) -> None:
    """Write chunked, embedded articles into the build directory `build`, manifest last; publish is next.

    Every engine (local, Ray) ends here, so they all write the same directory format.
    Row i of `vectors` (an array, or `vector_buffer`'s memmap) is `chunks[i]`, in article order,
    and so is item i of `signs`, its token vectors' sign bits when the index stores them.
    """
    if vectors.shape != (len(chunks), embedder.dimension):
        raise ValueError(f"{vectors.shape} vectors for {len(chunks)} chunks of dimension {embedder.dimension}")
    titles = {a.article_id: a.title for a in articles}
    factory = faiss_factory or choose_factory(len(chunks))
    figures = write_vector_index(vectors, factory, build)
    (build / VECTOR_BUFFER_NAME).unlink(missing_ok=True)
    lexical_texts = [f"{titles[c.article_id]}\n{c.text}" if lexical.title_in_chunks else c.text for c in chunks]
    LexicalIndex.build(lexical_texts, lexical.k1, lexical.b).save(build / LEXICAL_DIR)
    write_store(build / STORE_NAME, articles, chunks)
    if signs is not None and len(signs) != len(chunks):
        raise ValueError(f"token vectors of {len(signs)} chunks for {len(chunks)} chunks")
    late: dict[str, object] = {}
    if signs is not None:  # with the word pieces' chunk frequencies, which weight MaxSim's query tokens
        embedded = [embedding_text(titles[c.article_id], c.text, chunker) for c in chunks]
        late = write_token_signs(build, signs, embedder.dimension, text_frequencies(embedder, embedded))
    Manifest(
        index_id=build.name,
        model_id=embedder.model_id,
        dimension=embedder.dimension,
        chunker=chunker.to_dict(),
        lexical=asdict(lexical),
        faiss_factory=factory,
        counts={
            "articles": len(articles),
            "chunks": len(chunks),
            "skipped": len(report.skipped),
            "duplicates": len(report.duplicates),
        },
        corpus_fingerprint=corpus_fingerprint(list(articles)),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        embedder_backend=backend_of(embedder),
        vector_index=figures,
        late_interaction=late,
        extra=dict(extra or {}),
    ).write(build)  # written last: a build without a manifest is incomplete


def chunk_articles(
    articles: Sequence[Article],
    config: ChunkerConfig,
    progress: bool | None = None,
    reuse: dict[str, Spans] | None = None,
) -> list[Chunk]:
    """All chunks of all articles, in article order; `reuse` holds spans already computed, by article_key."""
    chunker = Chunker(config, wordpiece_counter())
    chunks: list[Chunk] = []
    for article in tqdm(articles, desc="Chunking", unit="article", disable=_disabled(progress, len(articles))):
        spans = reuse.get(article_key(article)) if reuse else None
        if spans is None:
            chunks.extend(chunker.chunk(article))
        else:
            text = article.text
            chunks.extend(Chunk(article.article_id, i, a, b, text[a:b]) for i, (a, b) in enumerate(spans))
    return chunks


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    progress: bool | None = None,
    cache: EmbeddingCache | None = None,
    out: np.ndarray | None = None,
    signs: list[np.ndarray] | SignSpool | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for `texts` (written into `out` when given) and how many were computed.

    Cached vectors are reused and each text is embedded once. Each batch is committed to
    the cache as soon as it is embedded, so an interrupted build keeps the work done so far.
    With `signs` (one slot per text), each text's token sign bits are put there too; a text
    is then taken from the cache only when both its vector and its bits are there.
    """
    if out is None:
        out = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    rows_of: dict[bytes, list[int]] = {}
    for row, text in enumerate(texts):
        rows_of.setdefault(text_key(text), []).append(row)
    todo: list[bytes] = []
    unique = list(rows_of)
    for start in range(0, len(unique), CACHE_BLOCK):
        block = unique[start : start + CACHE_BLOCK]
        known = cache.get_many(block) if cache is not None else {}
        known_signs = cache.get_many_signs(block) if cache is not None and signs is not None else {}
        for key in block:
            if key in known and (signs is None or key in known_signs):
                out[rows_of[key]] = known[key]
                if signs is not None:
                    for row in rows_of[key]:
                        signs[row] = known_signs[key]
            else:
                todo.append(key)
    with tqdm(total=len(todo), desc="Embedding", unit="chunk", disable=_disabled(progress, len(todo))) as bar:
        for start in range(0, len(todo), EMBED_BATCH):
            batch = todo[start : start + EMBED_BATCH]
            batch_texts = [texts[rows_of[key][0]] for key in batch]
            if signs is None:
                vectors = embedder.embed(batch_texts)
            else:
                vectors, tokens = embed_with_tokens(embedder, batch_texts)  # type: ignore[arg-type]
                bits = [pack_signs(t) for t in tokens]
                for key, packed in zip(batch, bits, strict=True):
                    for row in rows_of[key]:
                        signs[row] = packed
                if cache is not None:
                    cache.put_many_signs(zip(batch, bits, strict=True))
            for key, vector in zip(batch, vectors, strict=True):
                out[rows_of[key]] = vector
            if cache is not None:
                cache.put_many(zip(batch, vectors, strict=True))
            bar.update(len(batch))
    return out, len(todo)


def _disabled(progress: bool | None, total: int) -> bool | None:
    """tqdm's `disable`: None shows the bar only on a terminal."""
    if progress is None:
        return None if total > 1 else True
    return not progress
