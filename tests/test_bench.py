"""`newsdesk bench` end to end on a fixture dataset, and `newsdesk eval` scoring (fake embedder)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import eval.cli
from eval.bench import CachedQueryEmbedder, fusion_spec, parse_fusion, plan_runs
from eval.labelled import AnswerLocator, LabelledAnswer, Question, score_question
from indexer.build import build_index
from indexer.cli import main
from indexer.corpus import load_corpus
from indexer.embedding import EMBEDDER_KINDS, FakeEmbedder
from indexer.errors import NewsdeskError
from indexer.search import LATE_DEPTH, MODES, Citation, Hit, SearchConfig, SearchIndex
from tests.conftest import DAIMLER, SEED_CORPUS, XIAOMI_BLOOMBERG, XIAOMI_HT
from tests.test_datasets import write_dataset

# Each query shares rare words with exactly one document, so lexical search must be perfect.
TOPICS = {
    "cats": "Cats purr and sleep in warm sunlight.",
    "dogs": "Dogs bark loudly at the postman.",
    "rain": "Heavy monsoon rain flooded the valley roads.",
    "chess": "The grandmaster resigned the chess match after a blunder.",
    "volcano": "A volcano erupted, spewing ash over the island villages.",
    "bridge": "Engineers inspected the suspension bridge cables for corrosion.",
}
LONG = " ".join(f"Sentence {i} talks about the weather in general terms." for i in range(80))
DOCS = [{"_id": k, "title": k.title(), "text": v} for k, v in TOPICS.items()] + [
    {"_id": "long", "title": "Almanac", "text": LONG + " The lighthouse keeper polished the lens."}
]
QUERIES = [{"_id": f"q-{k}", "text": v.split()[1] + " " + v.split()[3]} for k, v in TOPICS.items()] + [
    {"_id": "q-long", "text": "lighthouse keeper lens"}
]
QRELS = "query-id\tcorpus-id\tscore\n" + "".join(f"q-{k}\t{k}\t1\n" for k in TOPICS) + "q-long\tlong\t1\n"
REQUIRED = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_ms_p50", "latency_ms_p95"}


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eval.cli, "_embedder", lambda args=None: FakeEmbedder())


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "fixture", docs=DOCS, queries=QUERIES, qrels=QRELS)


def bench(args: list[str], capsys) -> tuple[dict, str]:
    assert main(["bench", *args, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err  # json.loads fails unless stdout is one JSON document


def test_bench_end_to_end(dataset: Path, tmp_path: Path, fake_model, capsys):
    out = tmp_path / "report"
    report, err = bench(["--dataset", str(dataset), "--out", str(out)], capsys)
    assert report["dataset"] == "fixture" and report["split"] == "test" and report["queries"] == 7
    assert set(report["results"]) == {"lexical", "dense", "hybrid"}
    for metrics in report["results"].values():
        assert REQUIRED <= set(metrics) and "per_query_ndcg@10" not in metrics
        assert all(0 <= metrics[m] <= 1 for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10"))
        assert 0 < metrics["latency_ms_p50"] <= metrics["latency_ms_p95"] and metrics["latency_queries"] == 7
        assert 0 < metrics["rank_ms_p50"] <= metrics["rank_ms_p95"]
    assert report["results"]["lexical"]["ndcg@10"] == pytest.approx(1.0)
    assert report["results"]["lexical"]["mrr@10"] == pytest.approx(1.0)
    index = report["index"]
    assert index["docs"] == 7 and index["chunks"] > 7  # the long document was chunked
    assert index["build_s"] > 0 and index["chunks_per_s"] > 0 and index["peak_rss_mb"] > 0
    assert report["machine"]["cores"] >= 1 and report["settings"]["model"] == "fake/bag-of-words"
    assert "Queries lexical" in err and "Chunking" in err  # progress bars on stderr
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text())["results"] == report["results"]
    markdown = (out / "report.md").read_text()
    assert "| lexical | 1.0000 |" in markdown and "-core CPU" in markdown


def test_bench_reports_answer_hit_when_the_set_has_answers(dataset: Path, tmp_path: Path, fake_model, capsys):
    answers = [{"_id": "q-chess", "answer_text": ["BLUNDER"]},  # in its passage: case-folded hit
               {"_id": "q-volcano", "answer_text": ["a tsunami", " "]},  # in no passage: a miss
               {"_id": "q-unjudged", "answer_text": ["anything"]}]  # not in the split: ignored
    (dataset / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    report, _ = bench(["--dataset", str(dataset), "--modes", "lexical", "--out", str(tmp_path / "r")], capsys)
    assert report["results"]["lexical"]["answer_hit@5"] == pytest.approx(0.5)
    assert report["results"]["lexical"]["answer_queries"] == 2
    assert "Answer-hit@5" in (tmp_path / "r" / "report.md").read_text()
    (dataset / "answers.jsonl").write_text('{"_id": "q-chess", "answer_text": "not a list"}\n')
    assert main(["bench", "--dataset", str(dataset), "--modes", "lexical"]) == 2
    assert "answer_text" in capsys.readouterr().err


def test_bench_reuses_a_matching_index(dataset: Path, tmp_path: Path, fake_model, capsys):
    common = ["--dataset", str(dataset), "--modes", "lexical", "--index-dir", str(tmp_path / "idx"),
              "--out", str(tmp_path / "r"), "--no-progress"]
    first, _ = bench(common, capsys)
    second, err = bench(common, capsys)
    assert not first["index"]["reused"] and second["index"]["reused"]
    assert second["index"]["index_id"] == first["index"]["index_id"] and "Reusing index" in err
    assert second["index"]["build_s"] == first["index"]["build_s"]  # the recorded build figures
    third, _ = bench([*common, "--rebuild"], capsys)
    assert not third["index"]["reused"] and third["index"]["index_id"] != first["index"]["index_id"]


def test_bench_fusion_sweep(dataset: Path, tmp_path: Path, fake_model, capsys):
    report, _ = bench(["--dataset", str(dataset), "--modes", "hybrid", "--fusion", "rrf,convex:0.3",
                       "--out", str(tmp_path / "r"), "--no-progress", "--per-query"], capsys)
    assert set(report["results"]) == {"hybrid[rrf]", "hybrid[convex:0.3]"}
    for metrics in report["results"].values():
        per_query = metrics["per_query_ndcg@10"]
        assert set(per_query) == {q["_id"] for q in QUERIES}
        assert sum(per_query.values()) / len(per_query) == pytest.approx(metrics["ndcg@10"])
    assert report["settings"]["runs"]["hybrid[convex:0.3]"]["fusion"] == "convex:0.3"


def test_an_explicit_fusion_is_searched_as_given_and_none_means_the_index_defaults(
    dataset: Path, tmp_path: Path, fake_model, capsys
):
    common = ["--dataset", str(dataset), "--modes", "hybrid", "--index-dir", str(tmp_path / "idx"),
              "--out", str(tmp_path / "r"), "--no-progress"]
    default, _ = bench(common, capsys)  # FakeEmbedder gives token vectors: the index stores them
    assert default["settings"]["runs"]["hybrid"]["fusion"] == f"additive:1+late:1.5:{LATE_DEPTH}"
    plain, _ = bench([*common, "--fusion", "additive:1"], capsys)  # equal to SearchConfig(), yet asked for
    assert plain["settings"]["runs"]["hybrid"]["fusion"] == "additive:1"


def test_cached_query_embedder_matches_its_model():
    inner = FakeEmbedder()
    cached = CachedQueryEmbedder(inner)
    texts = ["cats purr", "dogs bark", "cats purr"]
    np.testing.assert_array_equal(cached.embed(texts), inner.embed(texts))
    np.testing.assert_array_equal(cached.embed(["dogs bark"]), inner.embed(["dogs bark"]))
    cached.prefill(["new words", "cats purr"], progress=False)
    np.testing.assert_array_equal(cached.embed(["new words"]), inner.embed(["new words"]))
    assert (cached.model_id, cached.dimension) == (inner.model_id, inner.dimension)
    assert cached.embed([]).shape == (0, inner.dimension)


def test_the_quality_pass_scores_late_interaction_as_the_service_does(dataset: Path, tmp_path: Path):
    """The bench's query-vector cache must not hide the token vectors (it once silently turned late interaction off)."""
    from eval.datasets import load_beir
    from indexer.late_interaction import TokenEmbedder

    inner = FakeEmbedder()
    cached = CachedQueryEmbedder(inner)
    assert isinstance(cached, TokenEmbedder)
    [got], [want] = cached.embed_tokens(["cats purr"]), inner.embed_tokens(["cats purr"])
    np.testing.assert_array_equal(got, want)
    # an index that stores token vectors weights MaxSim by the query word pieces' idf: the ids pass through
    np.testing.assert_array_equal(cached.token_ids(["cats purr"])[0], inner.token_ids(["cats purr"])[0])
    data = load_beir(dataset, "test")
    for stored in (True, False):
        root = tmp_path / f"idx-{stored}"
        build_index(data.documents, root, inner, progress=False, late_interaction=stored)
        late = SearchConfig(late_depth=20)
        for text in data.queries.values():
            served = SearchIndex.load(root, inner, late).search_articles(text, k=5)
            benched = SearchIndex.load(root, cached, late).search_articles(text, k=5)
            assert benched == served  # scores included: late interaction adds to every re-scored one


def test_bad_bench_arguments(dataset: Path, capsys):
    for args in (["--fusion", "convex:2"], ["--fusion", "linear"], ["--modes", "fuzzy"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", "--dataset", str(dataset), *args])
        assert exit_info.value.code == 2
    assert "ALPHA between 0 and 1" in capsys.readouterr().err
    assert main(["bench", "--dataset", str(dataset), "--split", "dev"]) == 2
    assert "available splits: test" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--dataset", str(dataset), "--modes", "lexical,fuzzy"])
    assert "'fuzzy'" in capsys.readouterr().err  # the bad mode is named
    assert main(["bench", "--dataset", str(dataset), "--modes", "lexical", "--fusion", "rrf"]) == 2
    assert "hybrid search only" in capsys.readouterr().err


def test_bench_refuses_files_and_foreign_indexes_before_working(dataset: Path, tmp_path: Path, fake_model, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for flag in ("--out", "--index-dir"):
        assert main(["bench", "--dataset", str(dataset), flag, str(afile), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{flag} {afile} is a file" in err and "Embedding" not in err  # refused before any work
    # An index the benchmark did not build (say, the one a service reads) is not replaced silently.
    served = tmp_path / "served"
    build_index(load_corpus(SEED_CORPUS)[0], served, FakeEmbedder(), progress=False)
    before = (served / "CURRENT").read_text()
    common = ["bench", "--dataset", str(dataset), "--modes", "lexical", "--index-dir", str(served),
              "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(common) == 2
    assert "did not build" in capsys.readouterr().err and (served / "CURRENT").read_text() == before
    assert main([*common, "--rebuild", "--json"]) == 0  # asked for explicitly


def test_repeated_fusion_settings_run_once(dataset: Path, tmp_path: Path, fake_model, capsys):
    report, _ = bench(["--dataset", str(dataset), "--modes", "hybrid", "--fusion", "rrf,convex:0.5,rrf,convex:.5",
                       "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert set(report["results"]) == {"hybrid[rrf]", "hybrid[convex:0.5]"}


def test_fusion_specs_and_plans():
    assert parse_fusion("rrf") == SearchConfig(fusion="rrf")
    assert parse_fusion("convex") == SearchConfig(fusion="convex")
    assert parse_fusion("convex:0.7") == SearchConfig(fusion="convex", alpha=0.7)
    assert parse_fusion("zscore:0.6") == SearchConfig(fusion="zscore", alpha=0.6)
    assert parse_fusion("additive") == SearchConfig()
    assert parse_fusion("additive:1.5") == SearchConfig(fusion="additive", lexical_weight=1.5)
    assert parse_fusion("additive+late:0.75") == SearchConfig(late_depth=LATE_DEPTH, late_weight=0.75)
    assert parse_fusion("additive:0.8+late:0.5:30") == SearchConfig(lexical_weight=0.8, late_weight=0.5, late_depth=30)
    assert fusion_spec(parse_fusion("additive+late:0")) == "additive:1"  # weight 0: off
    for spec in ("additive:1.5", "zscore:0.6", "convex:0.5", "rrf", "additive:1+late:0.75:20",
                 "additive:1+late:0.5:30"):
        assert fusion_spec(parse_fusion(spec)) == spec
    for bad in ("additive:11", "zscore:2", "convex:x", "rrf:1", "additive+late:x", "additive+late:11",
                "additive+late:1:-1", "rrf+late:1", "additive+late:"):
        with pytest.raises(NewsdeskError):
            parse_fusion(bad)
    assert [r.label for r in plan_runs(["dense", "hybrid"], [])] == ["dense", "hybrid"]
    assert set(eval.cli.MODES) == set(MODES) and set(eval.cli.EMBEDDERS) == set(EMBEDDER_KINDS)


# --- labelled questions -----------------------------------------------------------------------


def _hits(index: SearchIndex, chunk_texts_containing: list[str]) -> list[Hit]:
    """Hits made from the first stored chunk whose text contains each given string, in that order."""
    rows = index.store.chunks(list(range(index.store.chunk_count)))
    hits = []
    for rank, needle in enumerate(chunk_texts_containing, 1):
        row = next(r for r in rows if needle in r.text)
        citation = Citation(row.article_id, row.title, row.source, row.date, row.url, row.start, row.end)
        hits.append(Hit(rank, 1.0 / rank, row.chunk_id, row.text, citation))
    return hits


def test_passage_relevance_by_hand(fake_index: SearchIndex):
    byd = LabelledAnswer(DAIMLER, "BYD Co")
    question = Question("t1", "Who partners with Daimler on Denza?", "factual", True, (byd,))
    locator = AnswerLocator(fake_index, [question])
    relevant = locator.relevant_chunks(question)
    assert relevant == {r.chunk_id for r in fake_index.store.chunks(list(range(fake_index.store.chunk_count)))
                        if r.article_id == DAIMLER and "BYD Co" in r.text}
    # An irrelevant passage first, then one containing the answer: recall@1 0, recall@5 1, MRR 1/2.
    scores = score_question(question, _hits(fake_index, ["Lei Jun", "BYD Co"]), locator)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(relevant), 10) + 1))
    assert scores["recall@1"] == 0 and scores["recall@5"] == 1 and scores["mrr@10"] == 0.5
    assert scores["ndcg@10"] == pytest.approx((1 / math.log2(3)) / ideal)
    assert scores["answer_hit@5"] == 1


def test_answer_text_in_an_unlabelled_article_is_a_hit_but_not_relevant(fake_index: SearchIndex):
    answer = LabelledAnswer(XIAOMI_HT, "Beijing Automotive Group Co")
    question = Question("t2", "Xiaomi partner?", "factual", True, (answer,))
    locator = AnswerLocator(fake_index, [question])
    hits = _hits(fake_index, ["Beijing Automotive Group Co (北京汽車)"])  # the Daimler article says it too
    assert hits[0].citation.article_id == DAIMLER
    scores = score_question(question, hits, locator)
    assert scores["recall@5"] == 0 and scores["mrr@10"] == 0 and scores["answer_hit@5"] == 1


def test_multi_article_recall_counts_each_labelled_answer(fake_index: SearchIndex):
    answers = (LabelledAnswer(XIAOMI_BLOOMBERG, "around $10 billion"), LabelledAnswer(XIAOMI_HT, "about $10 billion"))
    question = Question("t3", "How much will Lei Jun invest?", "multi_article", True, answers)
    locator = AnswerLocator(fake_index, [question])
    assert score_question(question, _hits(fake_index, ["around $10 billion"]), locator)["recall@5"] == 0.5
    both = _hits(fake_index, ["around $10 billion", "about $10 billion"])
    assert score_question(question, both, locator)["recall@5"] == 1.0


def test_eval_command_end_to_end(tmp_path: Path, fake_model, capsys):
    out = tmp_path / "labelled"
    assert main(["eval", "--corpus", str(SEED_CORPUS), "--out", str(out), "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] >= 40 and report["answerable"] == report["questions"] - report["types"]["unanswerable"]
    assert set(report["results"]) == set(MODES)
    for metrics in report["results"].values():
        assert {"recall@1", "recall@5", "mrr@10", "ndcg@10", "answer_hit@5", "by_type"} <= set(metrics)
        assert metrics["recall@1"] <= metrics["recall@5"]
    # Lexical search on the Chinese names is exact: every CJK name question is found at rank 1.
    cjk = {q: s for q, s in report["per_question"]["lexical"].items() if q in {"q26", "q27"}}
    assert cjk and all(s["mrr@10"] == 1.0 for s in cjk.values())
    abstention = report["abstention"]
    assert abstention["unanswerable"] >= 6 and 0 <= abstention["unanswerable_abstained"] <= abstention["unanswerable"]
    assert {p.name for p in out.iterdir()} == {"results.json", "report.md", "chart.png"}
    assert report["source"]["corpus"] and report["source"]["index_dir"] is None
    assert report["source"]["questions"].endswith("questions.jsonl")
    assert f"over `{report['source']['corpus']}`" in (out / "report.md").read_text()


def test_eval_without_an_index_says_how_to_build_one(tmp_path: Path, fake_model, capsys):
    assert main(["eval", "--index-dir", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "newsdesk index" in capsys.readouterr().err


def test_eval_argument_errors(tmp_path: Path, fake_model, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a corpus")
    assert main(["eval", "--corpus", str(SEED_CORPUS), "--index-dir", str(tmp_path / "i")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["eval", "--corpus", str(SEED_CORPUS), "--out", str(afile)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["eval", "--corpus", str(afile), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "is not a corpus" in err and "Traceback" not in err


@pytest.mark.integration
def test_bench_with_the_real_model(dataset: Path, tmp_path: Path, real_embedder, monkeypatch, capsys):
    monkeypatch.setattr(eval.cli, "_embedder", lambda args=None: real_embedder)
    report, _ = bench(["--dataset", str(dataset), "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert report["settings"]["model"] == real_embedder.model_id  # the tuned model: MiniLM + adapter
    assert report["settings"]["model"].startswith("sentence-transformers/all-MiniLM-L6-v2+lora-")
    for mode in ("dense", "hybrid"):  # each query uses words of its own document only
        assert report["results"][mode]["mrr@10"] >= 0.8, mode


def test_reports_name_the_settings_their_fusion_reads():
    from dataclasses import asdict

    from eval.report import describe_fusion

    assert describe_fusion(asdict(SearchConfig())) == "additive (BM25 weight 1, depth 100)"
    assert describe_fusion(asdict(SearchConfig(late_depth=20, late_weight=0.75))) == (
        "additive (BM25 weight 1, depth 100, late interaction 0.75 over the top 20)"
    )
    old = asdict(SearchConfig())
    del old["late_depth"], old["late_weight"]  # a report written before late interaction
    assert describe_fusion(old) == "additive (BM25 weight 1, depth 100)"
    assert describe_fusion(asdict(SearchConfig(fusion="convex", alpha=0.75))) == "convex (dense weight 0.75, depth 100)"
    assert describe_fusion(asdict(SearchConfig(fusion="rrf", depth=50))) == "rrf (depth 50)"


def test_the_quality_pass_embeds_each_query_alone_as_the_service_does():
    """int8 ONNX quantises a batch's activations together: a query's vector depends on its batch-mates."""

    class BatchDependent(FakeEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            vectors = super().embed(texts)
            vectors[:, 0] += 0.01 * len(texts)  # like a scale shared by the batch
            return vectors

    inner = BatchDependent()
    texts = ["cats purr", "dogs bark loudly", "a storm over the harbour"]
    cached = CachedQueryEmbedder(inner)
    cached.prefill(texts, progress=False)
    for text in texts:
        np.testing.assert_array_equal(cached.embed([text])[0], inner.embed([text])[0])
    batched = CachedQueryEmbedder(inner)
    batched.prefill(texts, progress=False, batch=len(texts))  # what a batched comparison asks for
    assert not np.array_equal(batched.embed([texts[0]])[0], inner.embed([texts[0]])[0])
