"""Offline benchmark: index a BEIR dataset with the real pipeline, run its queries, score them.

Queries go through `SearchIndex.search_articles` (a document scores as its best
chunk), the code path the API uses, and are timed one at a time in-process.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eval.datasets import BeirDataset
from eval.metrics import mean, mrr_at_k, ndcg_at_k, percentile, recall_at_k
from eval.report import machine_info
from indexer.build import LexicalConfig, build_index
from indexer.chunking import ChunkerConfig
from indexer.corpus import corpus_fingerprint
from indexer.embedding import Embedder
from indexer.errors import NewsdeskError
from indexer.manifest import Manifest
from indexer.publish import current_build
from indexer.search import MODES, SearchConfig, SearchIndex

DEPTH = 100  # documents retrieved per query: enough for recall@100
BUILD_STATS = "bench_build.json"  # written next to CURRENT, so a reused index still reports its build
WARM_UP_QUERY = "warm up the model and caches"


@dataclass(frozen=True)
class ModeRun:
    """One search mode (with its fusion settings) to benchmark."""

    label: str
    mode: str
    config: SearchConfig = field(default_factory=SearchConfig)


@dataclass
class IndexStats:
    index_id: str
    docs: int
    chunks: int
    build_s: float | None
    peak_rss_mb: float | None
    reused: bool

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["docs_per_s"] = _rate(self.docs, self.build_s)
        data["chunks_per_s"] = _rate(self.chunks, self.build_s)
        return data


def fusion_spec(config: SearchConfig) -> str:
    """'convex:0.75', 'zscore:0.75' or 'rrf': the short name of a fusion setting."""
    return "rrf" if config.fusion == "rrf" else f"{config.fusion}:{config.alpha:g}"


def parse_fusion(spec: str) -> SearchConfig:
    """SearchConfig from 'rrf', 'convex[:ALPHA]' (min-max) or 'zscore[:ALPHA]' (ALPHA = dense weight, 0..1)."""
    name, _, alpha = spec.strip().partition(":")
    if name == "rrf" and not alpha:
        return SearchConfig(fusion="rrf")
    if name in ("convex", "zscore"):
        if not alpha:
            return SearchConfig(fusion=name)
        try:
            value = float(alpha)
        except ValueError:
            value = -1.0
        if 0.0 <= value <= 1.0:
            return SearchConfig(fusion=name, alpha=value)
    raise NewsdeskError(
        f"Unknown fusion {spec!r}; use rrf, convex[:ALPHA] or zscore[:ALPHA] with ALPHA between 0 and 1."
    )


def plan_runs(modes: Sequence[str], fusions: Sequence[SearchConfig]) -> list[ModeRun]:
    """One run per mode; hybrid once per fusion setting (labelled by it when there are several)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise NewsdeskError(f"Unknown mode(s) {', '.join(unknown) or '(none)'}; use: {', '.join(MODES)}.")
    fusions = list(fusions) or [SearchConfig()]
    runs: list[ModeRun] = []
    for mode in dict.fromkeys(modes):
        if mode != "hybrid":
            runs.append(ModeRun(mode, mode))
        elif len(fusions) == 1:
            runs.append(ModeRun("hybrid", "hybrid", fusions[0]))
        else:
            runs.extend(ModeRun(f"hybrid[{fusion_spec(c)}]", "hybrid", c) for c in fusions)
    return runs


class CachedQueryEmbedder:
    """Wraps an embedder and remembers each text's vector, so a fusion sweep embeds every query once.

    Only for sweeps: runs that reuse cached vectors do not time the query embedding.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self._vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.inner.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack([self._vectors[t] for t in texts])


def ensure_index(
    dataset: BeirDataset,
    root: Path,
    embedder: Embedder,
    rebuild: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> IndexStats:
    """Build the dataset's index under `root`, or reuse the one there if it indexes the same corpus the same way."""
    if not rebuild:
        reused = _reusable(dataset, root, embedder)
        if reused is not None:
            say(f"Reusing index {reused.index_id} at {root} (pass --rebuild to build it again)")
            return reused
    result = build_index(dataset.documents, root, embedder, progress=progress, say=say)
    stats = IndexStats(result.index_id, result.articles, result.chunks, result.seconds, peak_rss_mb(), False)
    (root / BUILD_STATS).write_text(json.dumps(asdict(stats), indent=2) + "\n", encoding="utf-8")
    return stats


def _reusable(dataset: BeirDataset, root: Path, embedder: Embedder) -> IndexStats | None:
    try:
        manifest = Manifest.read(current_build(root))
    except NewsdeskError:
        return None
    same = (
        manifest.model_id == embedder.model_id
        and manifest.dimension == embedder.dimension
        and manifest.chunker == ChunkerConfig().to_dict()
        and manifest.lexical == asdict(LexicalConfig())
        and manifest.corpus_fingerprint == corpus_fingerprint(dataset.documents)
    )
    if not same:
        return None
    stats = IndexStats(manifest.index_id, manifest.counts["articles"], manifest.counts["chunks"], None, None, True)
    try:
        recorded = json.loads((root / BUILD_STATS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return stats
    if recorded.get("index_id") == manifest.index_id:
        stats.build_s, stats.peak_rss_mb = recorded.get("build_s"), recorded.get("peak_rss_mb")
    return stats


def evaluate_run(
    root: Path,
    embedder: Embedder,
    dataset: BeirDataset,
    run: ModeRun,
    progress: bool = True,
    latency_queries: int = 100,
) -> tuple[dict[str, float], dict[str, object]]:
    """Quality and latency of one mode over every query; returns (metrics, settings)."""
    # A fresh load per run: the query-vector cache must not carry over from another mode.
    index = SearchIndex.load(root, embedder, run.config)
    index.search_articles(WARM_UP_QUERY, k=DEPTH, mode=run.mode)
    ndcg, r10, r100, mrr, latencies = [], [], [], [], []
    bar = tqdm(dataset.queries.items(), desc=f"Queries {run.label}", unit="q", disable=not progress, file=sys.stderr)
    for query_id, text in bar:
        started = time.perf_counter()
        ranked = [doc for doc, _ in index.search_articles(text, k=DEPTH, mode=run.mode)]
        latencies.append((time.perf_counter() - started) * 1000)
        labels = dataset.qrels[query_id]
        ndcg.append(ndcg_at_k(ranked, labels, 10))
        r10.append(recall_at_k(ranked, labels, 10))
        r100.append(recall_at_k(ranked, labels, 100))
        mrr.append(mrr_at_k(ranked, labels, 10))
    passage_ms = passage_latencies(root, embedder, run, list(dataset.queries.values())[:latency_queries])
    metrics = {
        "ndcg@10": mean(ndcg),
        "recall@10": mean(r10),
        "recall@100": mean(r100),
        "mrr@10": mean(mrr),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "search_ms_p50": percentile(passage_ms, 50),
        "search_ms_p95": percentile(passage_ms, 95),
        "search_queries": len(passage_ms),
    }
    settings: dict[str, object] = {"mode": run.mode}
    if run.mode == "hybrid":
        settings["fusion"] = fusion_spec(run.config)
    return metrics, settings


def passage_latencies(root: Path, embedder: Embedder, run: ModeRun, queries: Sequence[str]) -> list[float]:
    """Milliseconds per `search(query, k=10)` (what the API serves), each query's vector not cached."""
    index = SearchIndex.load(root, embedder, run.config)
    index.search(WARM_UP_QUERY, k=10, mode=run.mode)
    timings = []
    for text in queries:
        started = time.perf_counter()
        index.search(text, k=10, mode=run.mode)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def run_bench(
    dataset: BeirDataset,
    embedder: Embedder,
    runs: Sequence[ModeRun],
    index_dir: Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = lambda _: None,
    latency_queries: int = 100,
) -> dict[str, object]:
    """Index (or reuse), run every mode, and return the report as a JSON-ready dict."""
    with tempfile.TemporaryDirectory(prefix="newsdesk-bench-") as scratch:
        root = index_dir if index_dir is not None else Path(scratch) / "index"
        stats = ensure_index(dataset, root, embedder, rebuild, progress, say)
        manifest = Manifest.read(current_build(root))
        results: dict[str, dict[str, float]] = {}
        runs_settings: dict[str, dict[str, object]] = {}
        # A sweep runs hybrid once per fusion setting; embedding the same queries again for each
        # would only repeat the dense side's work, so later runs reuse the first run's vectors.
        sweep = sum(run.mode == "hybrid" for run in runs) > 1
        query_embedder: Embedder = CachedQueryEmbedder(embedder) if sweep else embedder
        embedded = False
        for run in runs:
            results[run.label], runs_settings[run.label] = evaluate_run(
                root, query_embedder, dataset, run, progress, latency_queries
            )
            if sweep and embedded and run.mode != "lexical":
                runs_settings[run.label]["query_vectors"] = "cached: latency excludes query embedding"
            embedded = embedded or run.mode != "lexical"
            say(f"{run.label}: nDCG@10 {results[run.label]['ndcg@10']:.4f}")
    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "queries": len(dataset.queries),
        "results": results,
        "index": stats.to_dict(),
        "settings": {
            "model": manifest.model_id,
            "dimension": manifest.dimension,
            "chunker": manifest.chunker,
            "lexical": manifest.lexical,
            "faiss": manifest.faiss_factory,
            "document_score": "best chunk",
            "depth": DEPTH,
            "runs": runs_settings,
        },
        "machine": machine_info(),
        "run_peak_rss_mb": peak_rss_mb(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 2) if seconds else None
