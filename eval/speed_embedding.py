"""Embedding speed and quality: sentence-transformers fp32 against the int8 ONNX path, in one run.

    python -m eval.speed_embedding throughput --corpus /work/cache/news-corpus --out eval/results/speed-throughput.json
    python -m eval.speed_embedding latency --queries ../shared/data/realtimeqa/queries.jsonl --out ...
    python -m eval.speed_embedding ndcg --dataset ../shared/data/scifact --split test train --out ...

Throughput runs every configuration on the same real chunks, interleaved round by
round, so a busy machine slows all of them alike; the ratio is taken per round. The
chunks are embedded in blocks of EMBED_BATCH, as `build_index` does. nDCG@10 builds one
index per embedder (no embedding cache) and scores `SearchIndex.search_articles`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from indexer.build import EMBED_BATCH, build_index, chunk_articles
from indexer.chunking import ChunkerConfig, embedding_text
from indexer.corpus import Article, load_corpus
from indexer.embedding import Embedder, SentenceTransformerEmbedder, backend_of
from indexer.onnx_embedder import OnnxEmbedder
from indexer.search import SearchIndex


def _configs(names: Sequence[str]) -> dict[str, Embedder]:
    known: dict[str, Callable[[], Embedder]] = {
        "st-fp32": lambda: SentenceTransformerEmbedder(batch_size=32),
        "onnx-int8 (default: 1 thread x 2 workers, batch 32)": lambda: OnnxEmbedder(),
        "onnx-int8 1 thread x 1 worker": lambda: OnnxEmbedder(threads=1, workers=1),
        "onnx-int8 2 threads x 1 worker": lambda: OnnxEmbedder(threads=2, workers=1),
        "onnx-int8 batch 16": lambda: OnnxEmbedder(batch_size=16),
        "onnx-int8 batch 64": lambda: OnnxEmbedder(batch_size=64),
    }
    return {name: known[name]() for name in names or known}


def _machine() -> dict[str, object]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "loadavg_at_start": [round(x, 2) for x in load]}


def sample_chunks(corpus: Path, count: int, seed: int = 13) -> list[str]:
    """`count` embedding texts of real chunks, drawn at random from the corpus's articles."""
    articles, _ = load_corpus(corpus)
    rng = np.random.default_rng(seed)
    chosen = [articles[i] for i in rng.permutation(len(articles))[: max(1, count // 4)]]
    config = ChunkerConfig()
    titles = {a.article_id: a.title for a in chosen}
    texts = [embedding_text(titles[c.article_id], c.text, config) for c in chunk_articles(chosen, config, False)]
    rng.shuffle(texts)  # corpus order would hand the embedder an article's similar-length chunks together
    return texts[:count]


def _embed_like_build(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    return np.vstack([embedder.embed(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)])


def throughput(args: argparse.Namespace) -> dict[str, object]:
    texts = sample_chunks(args.corpus, args.chunks)
    from indexer.tokens import wordpiece_counter

    count = wordpiece_counter()
    lengths = [min(256, count(t)) for t in texts]
    configs = _configs(args.configs)
    for embedder in configs.values():
        embedder.embed(texts[:64])  # load, export, warm up
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name, embedder in configs.items():
            started = time.perf_counter()
            _embed_like_build(embedder, texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_ + 1}: " + ", ".join(f"{n}: {r[-1]:.1f}/s" for n, r in rates.items()), file=sys.stderr)
    reference = rates.get("st-fp32")
    result: dict[str, object] = {
        "machine": _machine(), "chunks": len(texts), "rounds": args.rounds,
        "word_pieces_per_chunk": {"mean": round(float(np.mean(lengths)), 1), "median": float(np.median(lengths))},
        "chunks_per_s": {n: {"median": round(statistics.median(r), 1), "all": [round(x, 1) for x in r]}
                         for n, r in rates.items()},
    }
    if reference:
        result["speedup_vs_st_fp32"] = {
            n: round(statistics.median(a / b for a, b in zip(r, reference, strict=True)), 2)
            for n, r in rates.items() if n != "st-fp32"
        }
    return result


def latency(args: argparse.Namespace) -> dict[str, object]:
    queries = [json.loads(line)["text"] for line in args.queries.read_text().splitlines()][: args.count]
    configs = _configs(args.configs)
    for embedder in configs.values():
        for query in queries[:20]:
            embedder.embed([query])
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for query in queries:  # interleaved, query by query
        for name, embedder in configs.items():
            started = time.perf_counter()
            embedder.embed([query])
            samples[name].append((time.perf_counter() - started) * 1000)
    return {
        "machine": _machine(), "queries": len(queries), "source": str(args.queries),
        "ms": {n: {"p50": round(float(np.percentile(s, 50)), 2), "p95": round(float(np.percentile(s, 95)), 2),
                   "p99": round(float(np.percentile(s, 99)), 2)} for n, s in samples.items()},
    }


def cosine(args: argparse.Namespace) -> dict[str, object]:
    texts = sample_chunks(args.corpus, args.chunks)
    queries = [json.loads(line)["text"] for line in args.queries.read_text().splitlines()][: args.count]
    reference, fast = SentenceTransformerEmbedder(), OnnxEmbedder()
    out: dict[str, object] = {}
    for label, items, one_by_one in (("chunks", texts, False), ("queries", queries, True)):
        a = np.vstack([fast.embed([t]) for t in items]) if one_by_one else _embed_like_build(fast, items)
        b = _embed_like_build(reference, items)
        c = (a * b).sum(axis=1)
        out[label] = {"n": len(items), "min": round(float(c.min()), 4), "p1": round(float(np.percentile(c, 1)), 4),
                      "mean": round(float(c.mean()), 4)}
    return out


def _read_corpus(dataset: Path, work: Path) -> list[Article]:
    """The set's documents, through the project's own loader (which reads a directory: a view holding only them)."""
    import logging

    logging.getLogger("indexer.corpus").setLevel(logging.ERROR)
    corpus = next(p for p in (dataset / "corpus.jsonl", dataset / "corpus.jsonl.gz") if p.exists())
    view = work / f"{dataset.name}-corpus"
    view.mkdir(parents=True, exist_ok=True)
    link = view / corpus.name
    if not link.exists():
        link.symlink_to(corpus.resolve())
    return load_corpus(view)[0]


def _read_judged(dataset: Path, split: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Judged queries and their positive qrels for one split of a BEIR-layout set."""
    qrels: dict[str, dict[str, int]] = {}
    for line in (dataset / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {}
    for line in (dataset / "queries.jsonl").read_text().splitlines():
        query = json.loads(line)
        if query["_id"] in qrels:
            queries[query["_id"]] = query["text"]
    return queries, qrels


def ndcg_at_10(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    """Graded nDCG@10 (gain = qrels score), as trec_eval and BEIR compute it."""
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sum(g / math.log2(rank + 2) for rank, g in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


def evaluate(index: SearchIndex, queries: dict[str, str], qrels: dict[str, dict[str, int]], mode: str
             ) -> dict[str, float]:
    """nDCG@10 of each query, articles ranked by `SearchIndex.search_articles`."""
    return {qid: ndcg_at_10([d for d, _ in index.search_articles(text, k=10, mode=mode)], qrels[qid])
            for qid, text in queries.items()}


def ndcg(args: argparse.Namespace) -> dict[str, object]:
    articles = _read_corpus(args.dataset, args.work)
    splits = {split: _read_judged(args.dataset, split) for split in args.split}
    result: dict[str, object] = {"dataset": str(args.dataset), "queries": {s: len(q) for s, (q, _) in splits.items()}}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    embedders: list[tuple[str, Embedder]] = [] if args.skip_st else [("st", SentenceTransformerEmbedder())]
    embedders += [(f"onnx:{p.name}", OnnxEmbedder(model_path=p)) for p in args.onnx_model]
    embedders += [] if args.onnx_model else [("onnx", OnnxEmbedder())]
    for label, embedder in embedders:
        root = args.work / f"{args.dataset.name}-{label.replace(':', '-')}"
        row: dict[str, object] = {}
        if not (args.reuse and (root / "CURRENT").exists()):
            started = time.perf_counter()
            # embedding throughput as measured before late interaction was the default: vectors only
            built = build_index(articles, root, embedder, progress=False, cache=False, late_interaction=False)
            row = {"chunks": built.chunks, "build_s": round(time.perf_counter() - started, 1)}
        index = SearchIndex.load(root, embedder)
        row["chunks"] = index.store.chunk_count
        key = backend_of(embedder) if label in ("st", "onnx") else label
        for split, (queries, qrels) in splits.items():
            for mode in args.modes:
                scores = evaluate(index, queries, qrels, mode)
                row[f"{split} ndcg@10 {mode}"] = round(sum(scores.values()) / len(scores), 4)
                per_query.setdefault(key, {})[f"{split} {mode}"] = scores
        result[key] = row
        print(json.dumps(result), file=sys.stderr, flush=True)
    if args.per_query:
        args.per_query.write_text(json.dumps(per_query) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("throughput")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--chunks", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--configs", nargs="*", default=[])
    p = commands.add_parser("latency")
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--configs", nargs="*", default=["st-fp32", "onnx-int8 (default: 1 thread x 2 workers, batch 32)",
                                                    "onnx-int8 2 threads x 1 worker"])
    p = commands.add_parser("cosine")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--chunks", type=int, default=1024)
    p.add_argument("--count", type=int, default=300)
    p = commands.add_parser("ndcg")
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--split", nargs="+", default=["test"])
    p.add_argument("--work", type=Path, default=Path("/tmp/newsdesk-speed"))
    p.add_argument("--modes", nargs="*", default=["dense", "hybrid"])
    p.add_argument("--skip-st", action="store_true", help="only the ONNX model(s)")
    p.add_argument("--reuse", action="store_true", help="score indexes already built in --work instead of rebuilding")
    p.add_argument("--per-query", type=Path, help="also write every query's nDCG@10 here (JSON)")
    p.add_argument("--onnx-model", type=Path, nargs="*", default=[], help="int8 model files to compare (experiments)")
    for sub in commands.choices.values():
        sub.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = {"throughput": throughput, "latency": latency, "cosine": cosine, "ndcg": ndcg}[args.command](args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
