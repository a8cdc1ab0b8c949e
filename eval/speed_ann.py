"""Exact against approximate dense search on real vectors: recall, latency and build time by index size.

    python -m eval.speed_ann --vectors /work/cache/news-vectors \
        --queries ../shared/data/realtimeqa_news/queries.jsonl --out eval/results/speed-ann.json

--vectors is what `python -m eval.speed_vectors` wrote (the realtimeqa_news chunks
embedded with the default embedder). Queries are embedded with the same embedder.
For each size (a prefix of the vectors) it times one query at a time against the flat
index and HNSW at several efSearch values, and reports recall@10 and recall@100 of
HNSW against the exact top lists (ties in the exact scores are counted as found).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from eval.report import write_results
from eval.speed_vectors import load_vectors
from indexer.embedding import default_embedder
from indexer.vector_index import FLAT, HNSW, build_vector_index, search_vectors


def tie_aware_recall(exact_scores: np.ndarray, found_scores: np.ndarray, k: int) -> float:
    """Share of the exact top-k found, counting a result that ties the k-th exact score as a hit."""
    threshold = exact_scores[k - 1] - 1e-6
    return min(k, int((found_scores[:k] >= threshold).sum())) / k


def _timed(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[list[float], np.ndarray, np.ndarray]:
    times, positions, scores = [], [], []
    for query in queries:
        started = time.perf_counter()
        p, s = search_vectors(index, query, k)
        times.append((time.perf_counter() - started) * 1000)
        positions.append(p)
        scores.append(s)
    return times, np.array(positions), np.array(scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--count", type=int, default=500, help="queries timed and scored")
    parser.add_argument("--sizes", type=int, nargs="*", default=[25_000, 50_000, 100_000, 200_000, 0],
                        help="index sizes (0 = all vectors)")
    parser.add_argument("--ef", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--faiss-threads", type=int, default=0, help="OpenMP threads for FAISS (0: its default)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.faiss_threads:
        faiss.omp_set_num_threads(args.faiss_threads)

    _, vectors = load_vectors(args.vectors)
    texts = [json.loads(line)["text"] for line in args.queries.read_text().splitlines()]
    rng = np.random.default_rng(5)
    texts = [texts[i] for i in rng.permutation(len(texts))[: args.count]]
    embedder = default_embedder()
    queries = np.vstack([embedder.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    result: dict[str, object] = {
        "vectors": int(len(vectors)), "queries": len(queries), "faiss_threads": faiss.omp_get_max_threads(),
        "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "sizes": [],
    }
    for size in args.sizes:
        size = size or len(vectors)
        if size > len(vectors):
            continue
        data = vectors[:size]
        flat = build_vector_index(data, FLAT)
        started = time.perf_counter()
        hnsw = build_vector_index(data, HNSW)
        build_s = time.perf_counter() - started
        flat_ms, _, exact_scores = _timed(flat, queries, 100)
        row: dict[str, object] = {
            "size": size, "hnsw_build_s": round(build_s, 1),
            "flat_ms": {"p50": round(float(np.percentile(flat_ms, 50)), 2),
                        "p95": round(float(np.percentile(flat_ms, 95)), 2)},
            "hnsw": [],
        }
        for ef in args.ef:
            hnsw.hnsw.efSearch = ef
            for k in (10, 100):
                ms, _, scores = _timed(hnsw, queries, k)
                recall = float(np.mean([tie_aware_recall(exact_scores[i], scores[i], k) for i in range(len(queries))]))
                row["hnsw"].append({  # type: ignore[union-attr]
                    "efSearch": ef, "k": k, f"recall@{k}": round(recall, 4),
                    "p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
                })
        result["sizes"].append(row)  # type: ignore[union-attr]
        print(json.dumps(row), file=sys.stderr, flush=True)
        del flat, hnsw
    write_results(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
