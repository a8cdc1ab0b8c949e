"""`newsdesk eval` (labelled questions over corpus/) and `newsdesk bench` (BEIR datasets)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from indexer.cli import DEFAULT_INDEX_DIR, default_index_dir, index_dir_arg, require_directory_or_new

RESULTS_DIR = Path("eval/results")
DEFAULT_QUESTIONS = Path(__file__).resolve().parent / "questions.jsonl"
# indexer.search.MODES, spelled out so `newsdesk --help` need not import FAISS (a test keeps them equal).
MODES = ("hybrid", "dense", "lexical")
EMBEDDERS = ("auto", "onnx", "st")  # indexer.embedding.EMBEDDER_KINDS, likewise
EMBEDDER_HELP = "onnx (int8), st (sentence-transformers fp32) or auto (default: $NEWSDESK_EMBEDDER or auto)"


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _embedder(args: argparse.Namespace | None = None):  # type: ignore[no-untyped-def]
    """The embedder `newsdesk index`/`search` and the service use (--embedder, $NEWSDESK_EMBEDDER, else auto).

    Tests replace this with the fake embedder.
    """
    from indexer.embedding import default_embedder

    return default_embedder(getattr(args, "embedder", None))


def _modes(value: str) -> list[str]:
    modes = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        got = f"unknown {', '.join(map(repr, unknown))}; " if unknown else ""
        raise argparse.ArgumentTypeError(f"{got}use a comma-separated list of: {', '.join(MODES)}")
    return list(dict.fromkeys(modes))


def _fusions(value: str) -> list[object]:
    from eval.bench import parse_fusion
    from indexer.errors import NewsdeskError

    try:
        return [parse_fusion(spec) for spec in value.split(",") if spec.strip()]
    except NewsdeskError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return number


def cmd_bench(args: argparse.Namespace) -> int:
    from eval.bench import plan_runs, run_bench
    from eval.datasets import load_beir
    from eval.report import write_bench_report

    runs = plan_runs(args.modes, args.fusion or [])
    require_directory_or_new(args.index_dir, "--index-dir")
    require_directory_or_new(args.out, "--out")  # now, not after the whole benchmark has run
    dataset = load_beir(args.dataset, args.split)
    _say(f"{dataset.name}/{args.split}: {len(dataset.documents)} documents, {len(dataset.queries)} judged queries")
    report = run_bench(
        dataset,
        _embedder(args),
        runs,
        index_dir=Path(args.index_dir) if args.index_dir else None,
        rebuild=args.rebuild,
        progress=not args.no_progress,
        say=_say,
        latency_queries=args.latency_queries,
        per_query=args.per_query,
        late_interaction=args.late_interaction,
    )
    out = Path(args.out) if args.out else RESULTS_DIR / dataset.name
    paths = write_bench_report(report, out)
    _say("Wrote " + ", ".join(map(str, paths)))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"{'mode':<22} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7} {'p50 ms':>7} {'p95 ms':>7}")
        for label, r in report["results"].items():
            hit = f"  answer-hit@5 {r['answer_hit@5']:.4f}" if "answer_hit@5" in r else ""
            print(
                f"{label:<22} {r['ndcg@10']:8.4f} {r['recall@10']:7.4f} {r['recall@100']:7.4f} {r['mrr@10']:7.4f} "
                f"{r['latency_ms_p50']:7.1f} {r['latency_ms_p95']:7.1f}{hit}"
            )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from eval.labelled import load_questions
    from indexer.errors import NewsdeskError

    if args.corpus and args.index_dir:
        raise NewsdeskError("Give --corpus (index it into a temporary directory) or --index-dir, not both.")
    require_directory_or_new(args.out, "--out")  # now, not after the evaluation has run
    questions = load_questions(args.questions)
    embedder = _embedder(args)
    with tempfile.TemporaryDirectory(prefix="newsdesk-eval-") as scratch:
        root = Path(args.index_dir or default_index_dir())
        if args.corpus:
            from indexer.build import index_corpus

            corpus = Path(args.corpus)
            if not corpus.exists():
                raise NewsdeskError(f"Corpus directory {corpus} does not exist.")
            root = Path(scratch) / "index"
            index_corpus(corpus, root, embedder, progress=not args.no_progress, say=_say, cache=False)
        report = _evaluate(root, embedder, questions, args)
    report["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["source"] = {"questions": _shown(args.questions), "corpus": args.corpus and _shown(args.corpus),
                        "index_dir": None if args.corpus else str(root)}
    from eval.report import write_eval_report

    paths = write_eval_report(report, Path(args.out))
    _say("Wrote " + ", ".join(map(str, paths)))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"{'mode':<8} {'R@1':>6} {'R@5':>6} {'MRR@10':>7} {'nDCG@10':>8} {'hit@5':>6}")
        for mode, r in report["results"].items():
            print(
                f"{mode:<8} {r['recall@1']:6.3f} {r['recall@5']:6.3f} {r['mrr@10']:7.3f} {r['ndcg@10']:8.3f} "
                f"{r['answer_hit@5']:6.3f}"
            )
        a = report["abstention"]
        print(f"abstained on {a['unanswerable_abstained']}/{a['unanswerable']} unanswerable questions; "
              f"answered {a['answerable_answered']}/{a['answerable']} answerable ones")
        print(f"answer accuracy {a['answer_accuracy']}; abstention precision {a['abstention_precision']}, "
              f"recall {a['abstention_recall']}")
    return 0


def _shown(path: str) -> str:
    """`path` relative to the working directory when it lies below it (reports name no home directories)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _evaluate(root: Path, embedder: object, questions: list, args: argparse.Namespace) -> dict:
    from dataclasses import asdict

    from eval.labelled import evaluate_labelled
    from eval.report import machine_info
    from indexer.embedding import backend_of
    from indexer.search import SearchIndex

    index = SearchIndex.load(root, embedder)  # type: ignore[arg-type]
    report = evaluate_labelled(index, questions, args.modes, progress=not args.no_progress)
    report["index"] = {
        "id": index.index_id,
        "articles": index.store.article_count,
        "chunks": index.store.chunk_count,
    }
    report["settings"] = {
        "model": index.manifest.model_id,
        "embedder_backend": {"index": index.manifest.embedder_backend, "queries": backend_of(embedder)},
        "chunker": index.manifest.chunker,
        "lexical": index.manifest.lexical,
        "fusion": asdict(index.config),
    }
    report["machine"] = machine_info()
    return report


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `eval` and `bench` to the newsdesk command."""
    p = add("eval", cmd_eval, "Score search and /ask on the hand-labelled questions (about the articles in corpus/) "
            "over an index, or over --corpus indexed afresh, and write a report.")
    p.add_argument("--questions", default=str(DEFAULT_QUESTIONS), help="questions file (default: eval/questions.jsonl)")
    p.add_argument("--index-dir", type=index_dir_arg,
                   help=f"index to evaluate (default: $NEWSDESK_INDEX_DIR or {DEFAULT_INDEX_DIR})")
    p.add_argument("--corpus", help="index this corpus into a temporary directory first and evaluate that")
    p.add_argument("--modes", type=_modes, default=list(MODES), help="comma-separated (default: all three)")
    p.add_argument("--out", default=str(RESULTS_DIR / "labelled"), help="report directory (default: %(default)s)")
    p.add_argument("--embedder", choices=EMBEDDERS, help=EMBEDDER_HELP)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")

    p = add("bench", cmd_bench, "Benchmark retrieval on a BEIR-layout dataset and write a report.")
    p.add_argument("--dataset", required=True, help="directory with corpus.jsonl[.gz], queries.jsonl, qrels/")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument("--modes", type=_modes, default=["lexical", "dense", "hybrid"], help="comma-separated modes")
    p.add_argument(
        "--fusion",
        type=_fusions,
        help="hybrid fusion(s), comma-separated: additive[:WEIGHT][+late:LATE[:DEPTH]] "
             "(late interaction, e.g. +late:0.75), convex[:ALPHA] (min-max), zscore[:ALPHA], rrf",
    )
    p.add_argument("--index-dir", type=index_dir_arg,
                   help="keep the index here and reuse it when it matches (default: a temp dir)")
    p.add_argument("--rebuild", action="store_true", help="build the index even if --index-dir holds a matching one")
    p.add_argument("--latency-queries", type=_count, default=100, help="queries timed one by one (0: all)")
    p.add_argument("--embedder", choices=EMBEDDERS, help=EMBEDDER_HELP)
    p.add_argument("--per-query", action="store_true", help="also record each query's nDCG@10 (paired comparisons)")
    p.add_argument("--late-interaction", action=argparse.BooleanOptionalAction, default=None,
                   help="build the index with stored token vectors, as `newsdesk index` does by default, so "
                        "that the default hybrid re-scores its top passages by late interaction (default: on)")
    p.add_argument("--out", help="report directory (default: eval/results/<dataset name>)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
