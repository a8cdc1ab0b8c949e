"""Q&A sentence weights measured over whole news articles (realtimeqa_news), not quiz paragraphs.

The shipped weights (dense 0.6, lexical 0.1, passage 0.3; pool 5) were tuned on realtimeqa dev,
where every passage is one short evidence paragraph. The product answers from whole articles cut
into 160-token chunks, where a chunk's score says less about each of its sentences. This scores
the same weight grid (`eval.qa_calibration.weight_grid`) on realtimeqa_news: 26,648 whole
articles and the quiz questions found for them, with the gold answers of realtimeqa's
answers.jsonl. Questions dated before 2023 (the realtimeqa dev period) choose; those from 2023 on
are reported. `--set realtimeqa` scores the quiz paragraphs the weights were tuned on (dev, test)
the same way, through the product's int8 path.

    python -m eval.experiments.qa_weights INDEX_DIR OUT_DIR [--set news|realtimeqa] [--limit N]
    python -m eval.experiments.qa_weights CORPUS_INDEX_DIR OUT_DIR --set labelled --weights 0.6/0.1/0.3@5,...

INDEX_DIR: an index of the set's corpus built by `newsdesk bench` (its `--index-dir`).
Retrieval and sentence features are cached in OUT_DIR (pickles), so a second run only
re-weights.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from dataclasses import replace
from pathlib import Path

from eval.answers import (
    GoldQuestion,
    Retrieved,
    cites_answer,
    compose_from,
    labelled_metrics,
    load_labelled,
    load_realtimeqa,
    normalise,
    retrieve,
)
from eval.qa_calibration import choose_threshold, weight_grid
from indexer.answer import AnswerConfig
from indexer.embedding import default_embedder
from indexer.search import SearchConfig, SearchIndex
from indexer.sentence_scoring import SentenceWeights

DATA = Path("/work/shared/data")
RETRIEVALS = {
    "convex 0.5 (the /ask default)": SearchConfig(fusion="convex", alpha=0.5),
    "additive 1.0 (the search default)": SearchConfig(),
}
POOLS = (5, 10)


def load_questions() -> list[GoldQuestion]:
    """realtimeqa_news questions that have a gold answer text in realtimeqa/answers.jsonl."""
    relevant: dict[str, list[str]] = {}
    with open(DATA / "realtimeqa_news" / "qrels" / "test_silver.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            query_id, doc_id, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                relevant.setdefault(query_id, []).append(doc_id)
    texts = {}
    with open(DATA / "realtimeqa_news" / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts[row["_id"]] = row["text"]
    questions = []
    with open(DATA / "realtimeqa" / "answers.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            answers = tuple(t for t in row["answer_text"] if t.strip())
            if row["_id"] in texts and row["_id"] in relevant and answers:
                questions.append(GoldQuestion(row["_id"], texts[row["_id"]], answers, tuple(relevant[row["_id"]])))
    return sorted(questions, key=lambda q: q.id)


def first_sentence_hit(retrieved: Retrieved, gold: GoldQuestion, config: AnswerConfig) -> bool:
    """Whether the best sentence (never abstaining) contains a gold answer text."""
    answer, _ = compose_from(retrieved, replace(config, threshold=-1.0))
    return bool(answer.citations) and any(normalise(t) in normalise(answer.citations[0].quote) for t in gold.answers)


def labelled_check(index_dir: Path, candidates: list[tuple[SentenceWeights, int]]) -> list[dict[str, object]]:
    """Each (weights, pool) on the hand-labelled set: answers never abstaining, and with its own threshold."""
    questions = load_labelled()
    index = SearchIndex.load(index_dir, default_embedder())
    rows = []
    for retrieval_label, retrieval in RETRIEVALS.items():
        probe = AnswerConfig(retrieval=retrieval, candidates=max(POOLS)).for_model(index.manifest.model_id)
        retrieved = [retrieve(index, q.question, probe) for q in questions]
        for weights, pool in candidates:
            config = replace(probe, weights=weights, candidates=pool)
            ungated = [compose_from(r, replace(config, threshold=-1.0)) for r in retrieved]
            best = [score for _, score in ungated]
            cut = choose_threshold(best, [q.answerable for q in questions])
            gated = [compose_from(r, replace(config, threshold=cut.value))[0] for r in retrieved]
            metrics = labelled_metrics(gated, questions)
            right = [cites_answer(a, q) for (a, _), q in zip(ungated, questions, strict=True) if q.answerable]
            rows.append({
                "retrieval": retrieval_label, "weights": [weights.dense, weights.lexical, weights.passage],
                "pool": pool, "accuracy never abstaining": sum(right) / len(right),
                "threshold": cut.value, "balanced accuracy": cut.balanced_accuracy, "margin": cut.margin,
                "answer accuracy": metrics["answer_accuracy"], "answered": metrics["answered"],
                "unanswerable abstained": round(metrics["abstention_recall"] * metrics["unanswerable"]),
                "q05": next(a.answer for a, q in zip(gated, questions, strict=True) if q.id == "q05"),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--set", choices=("news", "realtimeqa", "labelled"), default="news")
    parser.add_argument("--weights", default="0.6/0.1/0.3@5", help="with --set labelled: W/W/W@POOL,...")
    parser.add_argument("--limit", type=int, help="only every n-th question (smoke runs)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.set == "labelled":
        candidates = []
        for item in args.weights.split(","):
            w, _, pool = item.partition("@")
            d, lex, pas = (float(x) for x in w.split("/"))
            candidates.append((SentenceWeights(d, lex, pas), int(pool or 5)))
        rows = labelled_check(args.index_dir, candidates)
        (args.out / "qa-labelled.json").write_text(json.dumps(rows, indent=2) + "\n")
        return
    if args.set == "news":
        questions = load_questions()[:: args.limit or 1]
        splits = {"dev (before 2023)": [q for q in questions if q.id < "2023"],
                  "test (2023 on)": [q for q in questions if q.id >= "2023"]}
    else:
        splits = {name: load_realtimeqa(DATA / "realtimeqa", name)[:: args.limit or 1] for name in ("dev", "test")}
        questions = [q for qs in splits.values() for q in qs]
    print({name: len(qs) for name, qs in splits.items()}, flush=True)
    index = None
    results: dict[str, object] = {"questions": {name: len(qs) for name, qs in splits.items()}, "retrievals": {}}
    for label, retrieval in RETRIEVALS.items():
        cache = args.out / f"retrieved-{args.set}-{label.split()[0]}-{args.limit or 1}.pkl"
        if cache.exists():
            retrieved = pickle.loads(cache.read_bytes())
        else:
            if index is None:
                index = SearchIndex.load(args.index_dir, default_embedder())
            config = AnswerConfig(retrieval=retrieval, candidates=max(POOLS))
            retrieved, started = [], time.perf_counter()
            for i, q in enumerate(questions, 1):
                retrieved.append(retrieve(index, q.question, config))
                if i % 100 == 0:
                    print(f"{label}: {i}/{len(questions)} ({time.perf_counter() - started:.0f} s)", flush=True)
            cache.write_bytes(pickle.dumps(retrieved))
        by_id = {q.id: r for q, r in zip(questions, retrieved, strict=True)}
        table = []
        for pool in POOLS:
            for weights in weight_grid():
                config = AnswerConfig(weights=weights, candidates=pool, retrieval=retrieval)
                row = {"pool": pool, "weights": [weights.dense, weights.lexical, weights.passage]}
                for name, qs in splits.items():
                    row[name] = sum(first_sentence_hit(by_id[q.id], q, config) for q in qs) / len(qs)
                table.append(row)
        dev = next(iter(splits))
        table.sort(key=lambda r: -r[dev])
        shipped = next(r for r in table if r["pool"] == 5 and r["weights"] == [0.6, 0.1, 0.3])
        results["retrievals"][label] = {"shipped": shipped, "best on dev": table[:10], "table": table}
        print(label, "shipped", shipped, flush=True)
        for row in table[:5]:
            print("  ", row, flush=True)
    (args.out / f"qa-{args.set}.json").write_text(json.dumps(results, indent=2) + "\n")
    if (args.out / "qa-news.json").exists() and (args.out / "qa-realtimeqa.json").exists():
        dev_mean(args.out)


def dev_mean(out: Path) -> None:
    """Rank every setting by the mean of its two dev shares (whole articles, quiz paragraphs): qa-dev-mean.json."""
    news = json.loads((out / "qa-news.json").read_text())["retrievals"]
    paragraphs = json.loads((out / "qa-realtimeqa.json").read_text())["retrievals"]
    summary = {}
    for label in RETRIEVALS:
        other = {(r["pool"], tuple(r["weights"])): r for r in paragraphs[label]["table"]}
        rows = []
        for r in news[label]["table"]:
            p = other[(r["pool"], tuple(r["weights"]))]
            rows.append({"pool": r["pool"], "weights": r["weights"],
                         "dev mean": (r["dev (before 2023)"] + p["dev"]) / 2,
                         "news dev": r["dev (before 2023)"], "paragraphs dev": p["dev"],
                         "news test": r["test (2023 on)"], "paragraphs test": p["test"]})
        rows.sort(key=lambda r: -r["dev mean"])
        shipped = next(r for r in rows if r["pool"] == 5 and r["weights"] == [0.6, 0.1, 0.3])
        summary[label] = {"shipped": shipped, "best 10": rows[:10]}
        print(label, json.dumps(shipped), *(json.dumps(r) for r in rows[:3]), sep="\n  ", flush=True)
    (out / "qa-dev-mean.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
