"""Offline benchmark: index a BEIR dataset with the real pipeline, run its queries, score them.

Quality: every query goes through `SearchIndex.search_articles` (a document scores as
its best chunk), the code the API uses, with query vectors embedded once in batches.
Latency: the first N queries, one at a time in-process, through `SearchIndex.search`
with the real embedder and nothing cached, as the API serves them.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from eval.datasets import BeirDataset
from eval.metrics import mean, mrr_at_k, ndcg_at_k, percentile, recall_at_k
from eval.report import machine_info
from indexer.build import build_index, published_match
from indexer.embedding import Embedder
from indexer.errors import NewsdeskError
from indexer.late_interaction import TokenEmbedder
from indexer.manifest import Manifest
from indexer.publish import current_build, current_id
from indexer.search import LATE_DEPTH, MODES, SearchConfig, SearchIndex, default_config

DEPTH = 100  # documents retrieved per query: enough for recall@100
QUERY_BATCH = 64  # queries a batch where a comparison embeds them batched (eval.peer_txtai, as txtai does)
BUILD_STATS = "bench_build.json"  # written next to CURRENT, so a reused index still reports its build
WARM_UP_QUERY = "warm up the model and caches"


@dataclass(frozen=True)
class ModeRun:
    """One search mode (with its fusion settings) to benchmark."""

    label: str
    mode: str
    config: SearchConfig | None = None  # None: the index's defaults, as the service searches it


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
    """'additive:1', 'convex:0.5', 'zscore:0.75' or 'rrf': the short name of a fusion setting."""
    if config.fusion == "rrf":
        return "rrf"
    if config.fusion == "additive":
        late = f"+late:{config.late_weight:g}:{config.late_depth}" if config.late_interaction else ""
        return f"additive:{config.lexical_weight:g}{late}"
    return f"{config.fusion}:{config.alpha:g}"


def parse_fusion(spec: str) -> SearchConfig:
    """SearchConfig from 'rrf', 'additive[:WEIGHT][+late:LATE[:DEPTH]]' (WEIGHT of the BM25 coverage,
    0..10; LATE the late-interaction weight over the top DEPTH passages, default LATE_DEPTH),
    'convex[:ALPHA]' (min-max) or 'zscore[:ALPHA]' (ALPHA = dense weight, 0..1)."""
    spec, marker, late = spec.strip().partition("+late:")
    if marker:
        if not spec.startswith("additive"):
            raise NewsdeskError(f"+late applies to the additive fusion only, not {spec!r}.")
        weight, _, depth = late.partition(":")
        try:
            config = parse_fusion(spec)
            return replace(config, late_weight=float(weight), late_depth=int(depth) if depth else LATE_DEPTH)
        except ValueError:
            raise NewsdeskError(
                f"Bad +late:{late}; use +late:WEIGHT[:DEPTH] with WEIGHT 0..10 (0: off) and DEPTH 0..1000."
            ) from None
    name, _, number = spec.strip().partition(":")
    if name == "rrf" and not number:
        return SearchConfig(fusion="rrf")
    if name in ("additive", "convex", "zscore"):
        if not number:
            return SearchConfig(fusion=name)
        try:
            value = float(number)
        except ValueError:
            value = -1.0
        if name == "additive" and 0.0 <= value <= 10.0:
            return SearchConfig(fusion="additive", lexical_weight=value)
        if name != "additive" and 0.0 <= value <= 1.0:
            return SearchConfig(fusion=name, alpha=value)
    raise NewsdeskError(
        f"Unknown fusion {spec!r}; use rrf, additive[:WEIGHT] with WEIGHT between 0 and 10, or "
        f"convex[:ALPHA] / zscore[:ALPHA] with ALPHA between 0 and 1."
    )


def plan_runs(modes: Sequence[str], fusions: Sequence[SearchConfig]) -> list[ModeRun]:
    """One run per mode; hybrid once per fusion setting (labelled by it when there are several), or
    with the index's defaults when none is given."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise NewsdeskError(f"Unknown mode(s) {', '.join(unknown) or '(none)'}; use: {', '.join(MODES)}.")
    if fusions and "hybrid" not in modes:
        raise NewsdeskError("--fusion applies to hybrid search only; add hybrid to --modes or leave --fusion out.")
    fusions = list({fusion_spec(c): c for c in fusions}.values())  # each setting once
    runs: list[ModeRun] = []
    for mode in dict.fromkeys(modes):
        if mode != "hybrid":
            runs.append(ModeRun(mode, mode))
        elif len(fusions) <= 1:
            runs.append(ModeRun("hybrid", "hybrid", fusions[0] if fusions else None))
        else:
            runs.extend(ModeRun(f"hybrid[{fusion_spec(c)}]", "hybrid", c) for c in fusions)
    return runs


class CachedQueryEmbedder:
    """Wraps an embedder and remembers each text's vector: the quality passes embed every query once.

    `prefill` embeds every query alone, as the service does: the int8 model quantises each batch's
    activations as a whole, so a query embedded in a batch gets a slightly different vector (mean
    cosine 0.992 to its own on SciFact test) and the bench would not score the service's rankings.
    Per-query latency is measured separately, with the real embedder (`query_latencies`).
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self._vectors: dict[str, np.ndarray] = {}
        if isinstance(inner, TokenEmbedder):  # late interaction re-encodes passages: always the real model
            self.embed_tokens = inner.embed_tokens
        if hasattr(inner, "token_ids"):  # the word pieces whose idf weights MaxSim's query tokens
            self.token_ids = inner.token_ids

    def prefill(self, texts: Sequence[str], progress: bool = True, batch: int = 1) -> None:
        """Embed `texts` now, with a progress bar: one at a time unless `batch` says otherwise."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        bar = tqdm(total=len(missing), desc="Embedding queries", unit="q", disable=not progress, file=sys.stderr)
        with bar:
            for start in range(0, len(missing), batch):
                chunk = missing[start : start + batch]
                self._vectors.update(zip(chunk, self.inner.embed(chunk), strict=True))
                bar.update(len(chunk))

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
    late_interaction: bool | None = None,
) -> IndexStats:
    """Build the dataset's index under `root`, or reuse the one there if it indexes the same corpus the same way."""
    if not rebuild:
        reused = _reusable(dataset, root, embedder, late_interaction)
        if reused is not None:
            say(f"Reusing index {reused.index_id} at {root} (pass --rebuild to build it again)")
            return reused
    if current_id(root) is not None and not (root / BUILD_STATS).exists() and not rebuild:
        raise NewsdeskError(
            f"{root} holds an index that newsdesk bench did not build (a service may be reading it), of another "
            "corpus or settings; give the benchmark its own --index-dir, or pass --rebuild to replace that index."
        )
    # No embedding cache: a benchmark build times embedding every chunk, as a first build does.
    result = build_index(dataset.documents, root, embedder, progress=progress, say=say, cache=False,
                         late_interaction=late_interaction)
    stats = IndexStats(result.index_id, result.articles, result.chunks, result.seconds, peak_rss_mb(), False)
    (root / BUILD_STATS).write_text(json.dumps(asdict(stats), indent=2) + "\n", encoding="utf-8")
    return stats


def _reusable(
    dataset: BeirDataset, root: Path, embedder: Embedder, late_interaction: bool | None
) -> IndexStats | None:
    manifest = published_match(root, dataset.documents, embedder, late_interaction=late_interaction)
    if manifest is None:
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
    dataset: BeirDataset,
    run: ModeRun,
    vectors: Embedder,
    embedder: Embedder,
    progress: bool = True,
    latency_queries: int = 100,
    per_query: bool = False,
) -> tuple[dict[str, object], dict[str, object]]:
    """Quality of one mode over every query (query vectors from `vectors`), and its latency; (metrics, settings)."""
    index = SearchIndex.load(root, vectors, run.config)
    ndcg: list[float] = []
    r10, r100, mrr, rank_ms = [], [], [], []
    bar = tqdm(dataset.queries.items(), desc=f"Queries {run.label}", unit="q", disable=not progress, file=sys.stderr)
    for query_id, text in bar:
        started = time.perf_counter()
        ranked = [doc for doc, _ in index.search_articles(text, k=DEPTH, mode=run.mode)]
        rank_ms.append((time.perf_counter() - started) * 1000)
        labels = dataset.qrels[query_id]
        ndcg.append(ndcg_at_k(ranked, labels, 10))
        r10.append(recall_at_k(ranked, labels, 10))
        r100.append(recall_at_k(ranked, labels, 100))
        mrr.append(mrr_at_k(ranked, labels, 10))
    if dataset.answers:
        bar.close()
        hits = [answer_hit(index, dataset.queries[q], answers, run.mode) for q, answers in dataset.answers.items()]
    timed = list(dataset.queries.values())
    latencies = query_latencies(root, embedder, run, timed[:latency_queries] if latency_queries else timed, progress)
    metrics: dict[str, object] = {
        "ndcg@10": mean(ndcg),
        "recall@10": mean(r10),
        "recall@100": mean(r100),
        "mrr@10": mean(mrr),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "latency_queries": len(latencies),
        "rank_ms_p50": percentile(rank_ms, 50),
        "rank_ms_p95": percentile(rank_ms, 95),
    }
    if dataset.answers:
        metrics["answer_hit@5"] = mean(hits)
        metrics["answer_queries"] = len(hits)
    if per_query:
        metrics["per_query_ndcg@10"] = dict(zip(dataset.queries, ndcg, strict=True))  # for paired comparisons
    settings: dict[str, object] = {"mode": run.mode}
    if run.mode == "hybrid":
        settings["fusion"] = fusion_spec(run.config)
    return metrics, settings


def answer_hit(index: SearchIndex, question: str, answers: Sequence[str], mode: str, k: int = 5) -> float:
    """1.0 if one of the top `k` passages contains a gold answer text (case-folded), else 0.0."""
    passages = [hit.text.casefold() for hit in index.search(question, k=k, mode=mode)]
    return float(any(answer.casefold() in passage for answer in answers for passage in passages))


def query_latencies(
    root: Path, embedder: Embedder, run: ModeRun, queries: Sequence[str], progress: bool = True
) -> list[float]:
    """Milliseconds per `search(query, k=10)`, what the API serves: query embedding included, nothing cached."""
    # One FAISS thread per search, as the service runs them (api.reload.service_embedder).
    faiss.omp_set_num_threads(1)
    # A fresh load: the index's own query-vector cache must not carry over from another pass.
    index = SearchIndex.load(root, embedder, run.config)
    index.search(WARM_UP_QUERY, k=10, mode=run.mode)  # loads the model and pages in the index
    timings = []
    for text in tqdm(queries, desc=f"Timing {run.label}", unit="q", disable=not progress, file=sys.stderr):
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
    per_query: bool = False,
    late_interaction: bool | None = None,
) -> dict[str, object]:
    """Index (or reuse), run every mode, and return the report as a JSON-ready dict.

    Unless `late_interaction` is False the index stores token vectors (as `newsdesk index` does),
    and the default hybrid run searches with late interaction as the service then does.
    """
    with tempfile.TemporaryDirectory(prefix="newsdesk-bench-") as scratch:
        root = index_dir if index_dir is not None else Path(scratch) / "index"
        stats = ensure_index(dataset, root, embedder, rebuild, progress, say, late_interaction)
        manifest = Manifest.read(current_build(root))
        # An explicit --fusion is searched as given: "additive:1" is the default without late interaction.
        runs = [replace(run, config=default_config(manifest)) if run.config is None else run for run in runs]
        results: dict[str, dict[str, object]] = {}
        runs_settings: dict[str, dict[str, object]] = {}
        vectors = CachedQueryEmbedder(embedder)
        if any(run.mode != "lexical" for run in runs):
            vectors.prefill(list(dataset.queries.values()), progress)
        for run in runs:
            results[run.label], runs_settings[run.label] = evaluate_run(
                root, dataset, run, vectors, embedder, progress, latency_queries, per_query
            )
            say(f"{run.label}: nDCG@10 {results[run.label]['ndcg@10']:.4f}")
    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "queries": len(dataset.queries),
        "results": results,
        "index": stats.to_dict(),
        "settings": {
            "model": manifest.model_id,
            "embedder_backend": manifest.embedder_backend,
            "dimension": manifest.dimension,
            "chunker": manifest.chunker,
            "lexical": manifest.lexical,
            "faiss": manifest.faiss_factory,
            "token_vectors": manifest.late_interaction or None,
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
