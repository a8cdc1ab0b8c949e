"""Exact vs HNSW through the whole search path, and re-indexing times, on the realtimeqa_news articles.

    python -m eval.speed_news --vectors /work/cache/news-vectors --corpus /work/cache/news-corpus \
        --dataset ../shared/data/realtimeqa_news --root /work/cache/news-index --out eval/results/speed-news.json

Uses the articles whose chunks `python -m eval.speed_vectors` has embedded so far (all of
them once it has finished): their vectors seed the index root's embedding cache, so the
builds here embed nothing new. Then, timing each build:

1. build with the exact index (Flat) and score nDCG@10 on qrels/test_silver, restricted
   to the judged articles in the index and the queries with at least one of them;
2. rebuild the same corpus with HNSW and score again (nothing to embed or chunk);
3. rebuild once more, unchanged (the plain re-index time);
4. append a sentence to one article and rebuild (re-embeds only its chunks).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from eval.report import write_results
from eval.speed_embedding import ndcg_at_10
from eval.speed_vectors import load_vectors
from indexer.build import build_index
from indexer.corpus import load_corpus
from indexer.embedding_cache import EmbeddingCache
from indexer.onnx_embedder import OnnxEmbedder
from indexer.search import SearchIndex
from indexer.vector_index import FLAT, HNSW


def _score(index: SearchIndex, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode in ("dense", "hybrid"):
        scores, times = [], []
        for query_id, text in queries.items():
            started = time.perf_counter()
            ranked = [doc for doc, _ in index.search_articles(text, k=10, mode=mode)]
            times.append((time.perf_counter() - started) * 1000)
            scores.append(ndcg_at_10(ranked, qrels[query_id]))
        out[f"ndcg@10 {mode}"] = round(float(np.mean(scores)), 4)
        out[f"search_articles p50 ms {mode}"] = round(float(np.percentile(times, 50)), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="index root to (re)build; keep it outside the repo")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("indexer.corpus").setLevel(logging.ERROR)

    rows, vectors = load_vectors(args.vectors)
    all_rows = (args.vectors / "chunks.jsonl").read_text().count("\n")
    partial = rows[-1]["article_id"] if len(rows) < all_rows else None  # its later chunks are not embedded yet
    covered = {r["article_id"] for r in rows} - {partial}
    articles = [a for a in load_corpus(args.corpus)[0] if a.article_id in covered]
    embedder = OnnxEmbedder()
    with EmbeddingCache.for_index(args.root, embedder) as cache:
        cache.put_many((bytes.fromhex(r["sha256"]), v) for r, v in zip(rows, vectors, strict=True))

    qrels: dict[str, dict[str, int]] = {}
    for line in (args.dataset / "qrels" / "test_silver.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0 and doc_id in covered:
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {q["_id"]: q["text"] for q in map(json.loads, (args.dataset / "queries.jsonl").read_text().splitlines())
               if q["_id"] in qrels}
    result: dict[str, object] = {"articles": len(articles), "queries": len(queries), "steps": []}

    def step(label: str, items, factory: str, score: bool) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        # Without token vectors, as measured: the cache seeded by eval.speed_vectors holds vectors only.
        built = build_index(items, args.root, embedder, progress=False, faiss_factory=factory, late_interaction=False)
        row: dict[str, object] = {"step": label, "faiss_factory": factory, "chunks": built.chunks,
                                  "embedded": built.embedded, "build_s": round(time.perf_counter() - started, 1)}
        if score:
            row.update(_score(SearchIndex.load(args.root, embedder), queries, qrels))
        result["steps"].append(row)  # type: ignore[union-attr]
        print(json.dumps(row), file=sys.stderr, flush=True)

    step("exact index", articles, FLAT, score=True)
    step("HNSW index, same corpus", articles, HNSW, score=True)
    step("re-index, unchanged corpus", articles, HNSW, score=False)
    edited = [replace(a, text=a.text + "\n\nEditor's note: this article was updated.") if i == 0 else a
              for i, a in enumerate(articles)]
    step("re-index, one article edited", edited, HNSW, score=False)
    write_results(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
