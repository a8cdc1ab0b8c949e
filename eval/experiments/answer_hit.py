"""RealTimeQA answer-hit@5: share of questions with a top-5 passage that contains the gold answer text.

Runs the product path (`SearchIndex.search(question, k=5)`) over a built RealTimeQA index
(e.g. the bench's --index-dir), for the default fusion and any others given. Query vectors
come from the experiment cache when it has them (same model, same text), else the model.

    python -m eval.experiments.answer_hit INDEX_ROOT [SPLIT] [FUSION ...]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eval.bench import fusion_spec, parse_fusion
from eval.datasets import load_qrels, load_queries
from eval.experiments.lab import CACHE, DATA
from indexer.embedding import SentenceTransformerEmbedder
from indexer.search import SearchConfig, SearchIndex


class CachedVectors:
    """The sentence-transformers embedder, answering from precomputed query vectors where it can."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.inner = SentenceTransformerEmbedder(model="base")
        self.model_id, self.dimension = self.inner.model_id, self.inner.dimension
        self.backend = getattr(self.inner, "backend", type(self.inner).__name__)
        self._known = dict(zip(texts, vectors, strict=True))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if all(t in self._known for t in texts):
            return np.vstack([self._known[t] for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        return self.inner.embed(texts)


def answer_hit(root: Path, split: str, configs: Sequence[SearchConfig]) -> dict[str, float]:
    dataset = DATA / "realtimeqa"
    queries = load_queries(dataset / "queries.jsonl")
    qrels = load_qrels(dataset / "qrels" / f"{split}.tsv")
    answers = {}
    for line in (dataset / "answers.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        answers[record["_id"]] = [a.casefold() for a in record["answer_text"] if a.strip()]
    ids = json.loads((CACHE / "realtimeqa" / "query_ids.json").read_text())
    embedder = CachedVectors([queries[q] for q in ids], np.load(CACHE / "realtimeqa" / "queries.npy"))
    out = {}
    for config in configs:
        index = SearchIndex.load(root, embedder, config)  # type: ignore[arg-type]
        hits = []
        for query_id in qrels:
            passages = [h.text.casefold() for h in index.search(queries[query_id], k=5)]
            hits.append(any(a in p for a in answers.get(query_id, []) for p in passages))
        out[fusion_spec(config)] = float(np.mean(hits))
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    split = argv[1] if len(argv) > 1 else "test"
    configs = [SearchConfig()] + [parse_fusion(s) for s in argv[2:]]
    for spec, value in answer_hit(root, split, configs).items():
        print(f"realtimeqa {split} answer-hit@5 [{spec}]: {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
