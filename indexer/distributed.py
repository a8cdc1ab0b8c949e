"""The Ray engine: chunk and embed on a Ray cluster with Ray Data, write with the local engine's writer.

    articles -> from_items -> map_batches(chunk, tasks) -> map_batches(embed, actor pool) -> driver

Each embedding actor loads the model once and embeds batches of `embed_batch_size`
chunks. The driver collects (article position, ordinal, offsets) rows, appends each block's
vectors to a file in the build directory as it arrives, restores article order itself
(Ray Data does not keep it by default, and relying on `preserve_order` would serialise
the pipeline's output), and hands chunks and vectors to `indexer.build.write_build`,
the same writer the local engine uses: the two engines produce the same index
directory, chunk for chunk. For a large (IVF) build the ordered vectors stay in a file
too, so the driver never holds them all. Unless told not to, the actors also return each
chunk's token vectors as sign bits (late interaction, indexer/late_interaction.py), which
the driver puts in article order as it does the vectors.

The corpus is loaded on the driver with `load_corpus`: duplicate detection needs
every article, and the single-file store and BM25 index are written on the driver
anyway (see docs/scaling.md for what that means at 10M articles).

Ray is an optional dependency (`pip install 'newsdesk[distributed]'`); nothing here
imports it until a build starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.build import (
    BuildResult,
    LexicalConfig,
    start_build,
    stores_tokens,
    up_to_date,
    vector_buffer,
    write_build,
)
from indexer.chunking import Chunk, Chunker, ChunkerConfig, embedding_text
from indexer.corpus import Article, LoadReport, load_corpus
from indexer.embedding import Embedder
from indexer.errors import CorpusError, NewsdeskError
from indexer.late_interaction import SignSpool, embed_with_tokens, pack_signs
from indexer.publish import build_lock, publish
from indexer.tokens import wordpiece_counter
from indexer.vector_index import choose_factory

log = logging.getLogger(__name__)

ARRIVED_NAME = "arrived-vectors.f32"  # vectors in the order Ray returned them, until reordered
REORDER_BLOCK = 100_000  # rows copied at a time into article order

RAY_MISSING = (
    "The Ray engine needs Ray Data, which is not installed. Install it with: "
    "pip install 'newsdesk[distributed]'  (or: pip install 'ray[data]>=2.9'), or use --engine local."
)
EmbedderFactory = Callable[[], Embedder]


@dataclass(frozen=True)
class RayOptions:
    """How the Ray pipeline runs; recorded in the manifest's `extra`."""

    address: str | None = None  # a running cluster ("auto", "ray://host:10001"); None starts a local instance
    num_cpus: int | None = None  # CPUs of the local instance (None: all); ignored with an address
    embed_actors: int | None = None  # embedding actors, each holding one model; None: as many as the CPUs allow
    embed_batch_size: int = 256  # chunks per embedding call
    cpus_per_actor: float = 1.0  # CPUs reserved per actor; its torch threads: this rounded up
    chunk_batch_size: int = 64  # articles per chunking task
    # CPUs reserved per chunking task. Actors hold their CPUs for the whole run, so the pool
    # plus one chunking task must fit the cluster or chunking never gets scheduled (Ray waits
    # forever); chunking costs a few percent of embedding, hence a fraction of a CPU.
    chunk_cpus: float = 0.25
    progress: bool = False  # Ray Data progress output

    def __post_init__(self) -> None:
        for name in ("embed_actors", "embed_batch_size", "chunk_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise NewsdeskError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        for name in ("cpus_per_actor", "chunk_cpus"):
            if getattr(self, name) <= 0:
                raise NewsdeskError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise NewsdeskError(f"num-cpus must be at least 1, got {self.num_cpus}.")

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("progress")
        return data


def require_ray() -> None:
    """Raise a NewsdeskError that says how to install Ray Data when it is missing."""
    try:
        missing = importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        raise NewsdeskError(RAY_MISSING)


def ray_index_corpus(
    corpus: Path,
    root: Path,
    embedder_factory: EmbedderFactory,
    options: RayOptions | None = None,
    chunker: ChunkerConfig | None = None,
    lexical: LexicalConfig | None = None,
    say: Callable[[str], None] = log.info,
    rebuild: bool = False,
    late_interaction: bool | None = None,
) -> BuildResult:
    """Load the corpus at `corpus` and publish an index of it under `root`, built on Ray.

    Like the local engine, nothing is built when the published index is up to date (unless
    `rebuild`), and the index stores token vectors unless `late_interaction` is False.
    """
    started = time.perf_counter()
    articles, report = load_corpus(corpus)
    say(f"Loaded {corpus}: {report.summary()}")
    if not rebuild:
        current = up_to_date(corpus, root, articles, report, embedder_factory(), chunker, lexical, say=say,
                             late_interaction=late_interaction)
        if current is not None:
            current.seconds = time.perf_counter() - started
            return current
    result = ray_build_index(articles, root, embedder_factory, options, chunker, lexical, say, report,
                             late_interaction)
    result.seconds = time.perf_counter() - started
    return result


def ray_build_index(
    articles: Sequence[Article],
    root: Path,
    embedder_factory: EmbedderFactory,
    options: RayOptions | None = None,
    chunker: ChunkerConfig | None = None,
    lexical: LexicalConfig | None = None,
    say: Callable[[str], None] = log.info,
    report: LoadReport | None = None,
    late_interaction: bool | None = None,
) -> BuildResult:
    """Chunk and embed `articles` on Ray, then write and publish the index like the local engine
    (token vectors included unless `late_interaction` is False)."""
    require_ray()
    if not articles:
        raise CorpusError("No articles to index: the corpus is empty or every file was skipped.")
    started = time.perf_counter()
    options = options or RayOptions()
    chunker = chunker or ChunkerConfig()
    lexical = lexical or LexicalConfig()
    report = report or LoadReport(loaded=len(articles))
    # On the driver for model_id and dimension (models load lazily) and, when the index stores token
    # vectors, to count the chunks' word pieces in write_build (its tokenizer loads the model here too).
    embedder = embedder_factory()
    tokens = stores_tokens(embedder, late_interaction)
    with build_lock(root):
        build = start_build(root, say)
        signs = SignSpool(build, 0, embedder.dimension) if tokens else None  # grows as chunks arrive
        try:
            with ray_session(options):
                chunks, vectors = chunk_and_embed(articles, embedder_factory, embedder.dimension, chunker, options,
                                                  build, signs)
            say(f"Chunked and embedded {len(articles)} articles into {len(chunks)} chunks on Ray")
            extra = {"engine": "ray", "ray": options.to_dict()}  # embed_actors None: sized to the cluster
            write_build(build, articles, chunks, vectors, embedder, chunker, lexical, report, extra=extra,
                        signs=signs)
        finally:  # written, or failed: the spool is of no more use
            if signs is not None:
                signs.remove()
        publish(root, build)
    seconds = time.perf_counter() - started
    say(f"Published index {build.name} at {root} ({len(articles)} articles, {len(chunks)} chunks) in {seconds:.1f}s")
    # The Ray engine has no embedding cache: every chunk was embedded.
    return BuildResult(build.name, build, len(articles), len(chunks), seconds, report, embedded=len(chunks))


def chunk_and_embed(
    articles: Sequence[Article],
    embedder_factory: EmbedderFactory,
    dimension: int,
    chunker: ChunkerConfig,
    options: RayOptions,
    build: Path,
    signs: SignSpool | None = None,
) -> tuple[list[Chunk], np.ndarray]:
    """All chunks of `articles` in article order and their vectors, computed by a Ray Data
    pipeline; with `signs` (an empty spool), their token vectors' sign bits too, spooled and
    then numbered in article order like the chunks.

    Vectors pass through files in the directory `build` (see `vector_buffer`). Needs a connected
    Ray (see `ray_session`).
    """
    import ray.data

    actors = embed_actor_count(options, float(ray.cluster_resources().get("CPU", 0)))
    rows = [{"pos": i, "article_id": a.article_id, "title": a.title, "text": a.text} for i, a in enumerate(articles)]
    blocks = max(1, min(len(rows) // options.chunk_batch_size, 1000))
    dataset = (
        ray.data.from_items(rows, override_num_blocks=blocks)
        .map_batches(
            chunk_batch,
            fn_kwargs={"config": chunker},
            batch_size=options.chunk_batch_size,
            batch_format="numpy",
            num_cpus=options.chunk_cpus,
        )
        .map_batches(
            EmbedBatch,
            fn_constructor_kwargs={
                "factory": embedder_factory, "threads": math.ceil(options.cpus_per_actor), "tokens": signs is not None,
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=options.embed_batch_size,
            batch_format="numpy",
            num_cpus=options.cpus_per_actor,
        )
    )
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("pos", "ordinal", "start", "end")}
    with open(build / ARRIVED_NAME, "wb") as arrived:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for name, values in parts.items():
                values.append(np.asarray(batch[name]))
            arrived.write(np.ascontiguousarray(batch["vector"], dtype=np.float32).tobytes())
            if signs is not None:  # numbered in the order Ray returns them
                for packed in batch["signs"]:
                    signs[len(signs)] = np.frombuffer(packed, dtype=np.uint8).reshape(-1, signs.width)
    if not parts["pos"]:
        (build / ARRIVED_NAME).unlink()
        return [], np.zeros((0, dimension), dtype=np.float32)
    pos, ordinal, start, end = (
        np.concatenate(parts[name]).astype(np.int64) for name in ("pos", "ordinal", "start", "end")
    )
    order = np.lexsort((ordinal, pos))  # article order, then reading order within an article
    pos, ordinal, start, end = pos[order], ordinal[order], start[order], end[order]
    _check_complete(pos, ordinal)
    chunks = [
        Chunk(articles[p].article_id, o, s, e, articles[p].text[s:e])
        for p, o, s, e in zip(pos.tolist(), ordinal.tolist(), start.tolist(), end.tolist(), strict=True)
    ]
    if signs is not None:
        signs.renumber(order)
    return chunks, _reorder(build, order, dimension)


def _reorder(build: Path, order: np.ndarray, dimension: int) -> np.ndarray:
    """Row i is row order[i] of the vectors as they arrived (then removed), copied block by block."""
    path = build / ARRIVED_NAME
    arrived = np.memmap(path, dtype=np.float32, mode="r", shape=(len(order), dimension))
    vectors = vector_buffer(build, len(order), dimension, choose_factory(len(order)))
    for start in range(0, len(order), REORDER_BLOCK):
        vectors[start : start + REORDER_BLOCK] = arrived[order[start : start + REORDER_BLOCK]]
    del arrived
    path.unlink()
    return vectors


def embed_actor_count(options: RayOptions, cluster_cpus: float) -> int:
    """The actor pool size: as asked, or as many as fit beside one chunking task; refuses a pool that cannot run."""
    fit = int((cluster_cpus - options.chunk_cpus) // options.cpus_per_actor)
    actors = options.embed_actors or max(1, fit)
    if actors > fit:
        problem = (
            f"{actors} embedding actor(s) x {options.cpus_per_actor} CPU plus {options.chunk_cpus} CPU for chunking "
            f"need more than the {cluster_cpus:g} CPUs Ray has, so chunking would never be scheduled. "
            f"Use --ray-actors {max(1, fit)} or a smaller --ray-cpus-per-actor."
        )
        if options.address is None:
            raise NewsdeskError(problem)
        log.warning("%s Waiting for the cluster to scale up.", problem)  # an autoscaler may add nodes
    return actors


def _check_complete(pos: np.ndarray, ordinal: np.ndarray) -> None:
    """Each article's ordinals must be 0..n-1 exactly once: a lost or repeated batch would misalign the index."""
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    expected = np.arange(len(pos)) - np.repeat(starts, np.diff(np.r_[starts, len(pos)]))
    if not np.array_equal(ordinal, expected):
        raise NewsdeskError("The Ray pipeline returned missing or repeated chunks; run the build again.")


def chunk_batch(batch: dict[str, np.ndarray], config: ChunkerConfig) -> dict[str, Any]:
    """Ray Data stage: a batch of articles in, one row per chunk out (offsets and embedding text)."""
    chunker = _chunker(config)
    out: dict[str, list[Any]] = {name: [] for name in ("pos", "ordinal", "start", "end", "embed_text")}
    columns = (batch["pos"], batch["article_id"], batch["title"], batch["text"])
    for pos, article_id, title, text in zip(*columns, strict=True):
        article = Article(str(article_id), str(title), str(text))
        for chunk in chunker.chunk(article):
            out["pos"].append(int(pos))
            out["ordinal"].append(chunk.ordinal)
            out["start"].append(chunk.start)
            out["end"].append(chunk.end)
            out["embed_text"].append(embedding_text(article.title, chunk.text, config))
    return {
        "pos": np.array(out["pos"], dtype=np.int64),
        "ordinal": np.array(out["ordinal"], dtype=np.int64),
        "start": np.array(out["start"], dtype=np.int64),
        "end": np.array(out["end"], dtype=np.int64),
        "embed_text": np.array(out["embed_text"], dtype=object),
    }


_CHUNKERS: dict[ChunkerConfig, Chunker] = {}


def _chunker(config: ChunkerConfig) -> Chunker:
    """One Chunker per worker process: building it loads the tokenizers."""
    if config not in _CHUNKERS:
        _CHUNKERS[config] = Chunker(config, wordpiece_counter())
    return _CHUNKERS[config]


class EmbedBatch:
    """Ray Data actor: loads the embedder once, then embeds batch after batch."""

    def __init__(self, factory: EmbedderFactory, threads: int = 1, tokens: bool = False) -> None:
        self.embedder = factory()
        self.tokens = tokens  # also each chunk's token vectors, as packed sign bits
        warm_up = getattr(self.embedder, "warm_up", None)
        if callable(warm_up):
            warm_up()
        if "torch" in sys.modules:  # as many torch threads as CPUs reserved, not one per core of the node
            sys.modules["torch"].set_num_threads(threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["embed_text"]]
        out = {name: batch[name] for name in ("pos", "ordinal", "start", "end")}
        if not self.tokens:
            return out | {"vector": np.asarray(self.embedder.embed(texts), dtype=np.float32)}
        vectors, tokens = embed_with_tokens(self.embedder, texts)  # type: ignore[arg-type]
        signs = np.empty(len(texts), dtype=object)
        signs[:] = [pack_signs(t).tobytes() for t in tokens]
        return out | {"vector": np.asarray(vectors, dtype=np.float32), "signs": signs}


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Connect to `options.address`, or start a local Ray instance; shut down what was started here.

    A Ray already initialised by the caller (a test, a notebook) is used as it is.
    """
    import ray

    if ray.is_initialized():
        _quiet_ray_data(options.progress)
        yield
        return
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": options.progress}
    package_parent = str(Path(__file__).resolve().parent.parent)
    if options.address:
        # Ship this checkout's `indexer` package so the cluster runs the driver's code;
        # its dependencies (tiktoken, sentence-transformers...) must be installed on the nodes.
        runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
        ray.init(address=options.address, runtime_env=runtime_env, **common)
    else:
        # Local workers inherit the environment of the raylet started here: make them import
        # this checkout's `indexer`, not whichever copy site-packages happens to hold.
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, saved) if p)
        try:
            ray.init(num_cpus=options.num_cpus, **common)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    try:
        _quiet_ray_data(options.progress)
        yield
    finally:
        ray.shutdown()


def _quiet_ray_data(progress: bool) -> None:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
