"""The BEIR loader and the labelled-questions loader: good files load, bad files fail clearly."""

import gzip
import json
from pathlib import Path

import pytest

from eval.cli import DEFAULT_QUESTIONS
from eval.datasets import DatasetError, load_beir
from eval.labelled import QUESTION_TYPES, AnswerLocator, load_questions
from indexer.cli import main
from indexer.search import SearchIndex
from tests.conftest import DAIMLER

DOCS = [
    {"_id": "d1", "title": "Cats", "text": "Cats purr when they are content."},
    {"_id": "d2", "title": "", "text": "Dogs bark at strangers.", "date": "2020/01/03", "source": "CNN",
     "url": "https://example.com/d2"},
    {"_id": 3, "title": "Markets", "text": "Stocks fell on Monday."},
]
QUERIES = [{"_id": "q1", "text": "why do cats purr"}, {"_id": "q2", "text": "barking dogs"},
           {"_id": "q3", "text": "not judged in test"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\t3\t0\n"


def write_dataset(root: Path, docs=DOCS, queries=QUERIES, qrels=QRELS, split="test", gz=False) -> Path:
    """A BEIR-layout dataset in `root`; lines given as strings are written verbatim (to break them)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = "".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs)
    if gz:
        with gzip.open(root / "corpus.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.write(lines)
    else:
        (root / "corpus.jsonl").write_text(lines, encoding="utf-8")
    (root / "queries.jsonl").write_text(
        "".join((q if isinstance(q, str) else json.dumps(q)) + "\n" for q in queries), encoding="utf-8"
    )
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_loads_documents_queries_and_graded_qrels(tmp_path: Path, gz: bool):
    data = load_beir(write_dataset(tmp_path / "tiny", gz=gz), "test")
    assert data.name == "tiny" and data.split == "test"
    assert [d.article_id for d in data.documents] == ["d1", "d2", "3"]  # numeric ids become strings
    d2 = data.documents[1]
    assert d2.title == "" and d2.date == "2020-01-03" and d2.source == "CNN" and d2.url == "https://example.com/d2"
    assert data.queries == {"q1": "why do cats purr", "q2": "barking dogs"}  # only the judged queries
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "3": 0}}


def _error(tmp_path: Path, split: str = "test", **files) -> str:
    with pytest.raises(DatasetError) as err:
        load_beir(write_dataset(tmp_path / "ds", **files), split)
    return str(err.value)


def test_missing_split_lists_the_available_ones(tmp_path: Path):
    message = _error(tmp_path, split="dev")
    assert "dev.tsv does not exist" in message and "available splits: test" in message


def test_missing_files(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nowhere")
    root = write_dataset(tmp_path / "a")
    (root / "corpus.jsonl").unlink()
    with pytest.raises(DatasetError, match="no corpus.jsonl"):
        load_beir(root)
    root = write_dataset(tmp_path / "b")
    (root / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match="no queries.jsonl"):
        load_beir(root)
    root = write_dataset(tmp_path / "c")
    (root / "qrels" / "test.tsv").unlink()
    (root / "qrels").rmdir()
    with pytest.raises(DatasetError, match="no qrels/ directory"):
        load_beir(root)


def test_unknown_ids_in_qrels(tmp_path: Path):
    message = _error(tmp_path, qrels="q1\td1\t1\nq9\td1\t1\n")
    assert "1 query id(s) not in queries.jsonl" in message and "'q9'" in message
    message = _error(tmp_path, qrels="q1\td1\t1\nq2\tghost\t1\n")
    assert "1 corpus id(s) not in the corpus" in message and "'ghost'" in message


def test_malformed_lines_name_file_and_line(tmp_path: Path):
    message = _error(tmp_path, docs=[DOCS[0], '{"_id": "d2", "text": '])
    assert "corpus.jsonl:2" in message and "malformed JSON" in message
    assert "queries.jsonl:1" in _error(tmp_path, queries=['["not", "an object"]'])
    assert "no '_id'" in _error(tmp_path, docs=[{"title": "T", "text": "x"}])
    assert "appears twice" in _error(tmp_path, docs=[DOCS[0], DOCS[0]])
    assert "neither text nor title" in _error(tmp_path, docs=[{"_id": "d1", "title": "", "text": " "}])
    message = _error(tmp_path, qrels="q1\td1\n")
    assert "test.tsv:1" in message and "3 tab-separated fields" in message
    message = _error(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    assert "test.tsv:2" in message and "not an integer" in message
    assert "no positive judgements" in _error(tmp_path, qrels="q1\td1\t0\n")
    assert "has no judgements" in _error(tmp_path, qrels="query-id\tcorpus-id\tscore\n")
    message = _error(tmp_path, qrels="q1\td1\t2\nq1\td1\t0\n")
    assert "test.tsv:2" in message and "judge each pair once" in message


def test_qrels_encoding_and_split_names(tmp_path: Path):
    root = write_dataset(tmp_path / "bom", qrels="\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert load_beir(root).qrels == {"q1": {"d1": 1}}  # a byte-order mark is not part of the header
    (root / "qrels" / "test.tsv").write_bytes(b"q1\td1\t1\nq\xff\td1\t1\n")
    with pytest.raises(DatasetError, match="cannot be read"):
        load_beir(root)
    for split in ("../../other/qrels/test", "", ".hidden"):
        with pytest.raises(DatasetError, match="not a split name"):
            load_beir(root, split)


def test_questions_file_that_is_not_utf8(tmp_path: Path):
    path = tmp_path / "questions.jsonl"
    path.write_bytes(b'{"id": "q1", "question": "Wh\xff?"}\n')
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_questions(path)


def test_bench_cli_reports_dataset_errors_without_a_traceback(tmp_path: Path, capsys):
    root = write_dataset(tmp_path / "ds", qrels="q1\tghost\t1\n")
    assert main(["bench", "--dataset", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "newsdesk: error:" in err and "ghost" in err and "Traceback" not in err


# --- the hand-labelled questions -------------------------------------------------------------


def _question(**overrides) -> str:
    record = {"id": "q1", "question": "Who?", "type": "factual", "answerable": True,
              "answers": [{"article_id": DAIMLER, "text": "BYD Co"}]}
    return json.dumps(record | overrides)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{broken", "malformed JSON"),
        (_question(type="trivia"), "type 'trivia' is not one of"),
        (_question(answers=[]), "an answerable question needs answers"),
        (_question(answerable=False), "an unanswerable one must have none"),
        (_question(answers=[{"article_id": DAIMLER}]), "non-empty 'text'"),
        (_question(question=""), "non-empty strings"),
        (_question() + "\n" + _question(), "appears twice"),
    ],
)
def test_bad_question_files(tmp_path: Path, line: str, expected: str):
    path = tmp_path / "questions.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=expected) as err:
        load_questions(path)
    assert str(path) in str(err.value)


def test_labels_must_quote_an_indexed_article(tmp_path: Path, fake_index: SearchIndex):
    path = tmp_path / "questions.jsonl"
    path.write_text(_question(answers=[{"article_id": DAIMLER, "text": "Tesla Motors"}]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="does not occur in article"):
        AnswerLocator(fake_index, load_questions(path))
    path.write_text(_question(answers=[{"article_id": "nope", "text": "x"}]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="not in the index"):
        AnswerLocator(fake_index, load_questions(path))


def test_the_shipped_questions_match_the_corpus(fake_index: SearchIndex):
    """eval/questions.jsonl meets the issue: >= 40 questions, every type, >= 6 unanswerable, exact quotes."""
    questions = load_questions(DEFAULT_QUESTIONS)
    assert len(questions) >= 40
    assert {q.type for q in questions} == set(QUESTION_TYPES)
    assert sum(not q.answerable for q in questions) >= 6
    assert any(len({a.article_id for a in q.answers}) == 2 for q in questions if q.type == "multi_article")
    locator = AnswerLocator(fake_index, questions)  # raises if any label does not quote its article
    assert all(locator.relevant_chunks(q) for q in questions if q.answerable)
