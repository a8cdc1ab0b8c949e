"""The hand-labelled questions (eval/questions.jsonl) under several fusion settings, on one index of corpus/.

    python -m eval.experiments.labelled_configs [--default-model] [convex:0.5 convex:0.75 zscore:0.75 ...]

The packaged model alone in fp32 (how the fusions were first compared), or with --default-model
the service's embedder (int8, with the retrieval adapter).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from eval.bench import parse_fusion
from eval.cli import DEFAULT_QUESTIONS
from eval.labelled import evaluate_labelled, load_questions
from indexer.build import index_corpus
from indexer.embedding import SentenceTransformerEmbedder, default_embedder
from indexer.search import SearchIndex


def main(specs: list[str]) -> int:
    questions = load_questions(DEFAULT_QUESTIONS)
    service_model = "--default-model" in specs
    specs = [s for s in specs if s != "--default-model"]
    embedder = default_embedder() if service_model else SentenceTransformerEmbedder(model="base")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "index"
        index_corpus(Path("corpus"), root, embedder, progress=False)
        print("| fusion | R@1 | R@5 | MRR@10 | nDCG@10 | answer-hit@5 | /ask: abstained (unanswerable) | "
              "/ask: answered (answerable) |")
        print("|---|---|---|---|---|---|---|---|")
        for spec in specs or ["convex:0.5", "additive"]:
            index = SearchIndex.load(root, embedder, parse_fusion(spec))
            report = evaluate_labelled(index, questions, ["hybrid"], progress=False)
            r, a = report["results"]["hybrid"], report["abstention"]
            print(f"| {spec} | {r['recall@1']:.3f} | {r['recall@5']:.3f} | {r['mrr@10']:.3f} | {r['ndcg@10']:.3f} "
                  f"| {r['answer_hit@5']:.3f} | {a['unanswerable_abstained']}/{a['unanswerable']} "
                  f"| {a['answerable_answered']}/{a['answerable']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
