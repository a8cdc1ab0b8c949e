"""Q&A with the real all-MiniLM-L6-v2 model on corpus/ and the shipped calibration."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.answers import cites_answer, load_labelled
from indexer.answer import NOT_FOUND, answer_question
from indexer.search import SearchIndex
from tests.conftest import DAIMLER, REPO, XIAOMI_BLOOMBERG, XIAOMI_HT

pytestmark = pytest.mark.integration


def test_every_quote_of_every_labelled_question_slices_its_article(real_index: SearchIndex):
    for q in load_labelled():
        answer = answer_question(real_index, q.question, k=3)
        assert len(answer.passages) == 3, q.id
        for c in answer.citations:
            assert real_index.article(c.article_id).text[c.start : c.end] == c.quote, q.id


def test_the_pledge_reported_by_two_outlets_cites_both(real_index: SearchIndex):
    answer = answer_question(real_index, "How much has Xiaomi's co-founder pledged to invest in electric vehicles?")
    assert answer.answerable
    cited = {c.article_id for c in answer.citations if "$10 billion" in c.quote}
    assert cited == {XIAOMI_BLOOMBERG, XIAOMI_HT}
    assert "[1][2]" in answer.answer  # one sentence, two sources


@pytest.mark.parametrize(
    "question, expected",
    [("戴姆勒和比亞迪合作的品牌是什麼？", "Denza"), ("比亞迪", "比亞迪"), ("北京新能源汽車", "BJEV")],
)
def test_cjk_questions_about_names_in_the_corpus(real_index: SearchIndex, question: str, expected: str):
    answer = answer_question(real_index, question)
    assert answer.answerable and answer.confidence > 0.5
    assert answer.citations[0].article_id == DAIMLER and expected in answer.citations[0].quote


@pytest.mark.parametrize(
    "question", ["Who won the football World Cup final in Bern in 1954?", "Who is the chief executive of Chery?"]
)
def test_unanswerable_questions_abstain_with_the_closest_passages(real_index: SearchIndex, question: str):
    answer = answer_question(real_index, question, k=4)
    assert not answer.answerable and answer.answer == NOT_FOUND and answer.citations == []
    assert len(answer.passages) == 4 and answer.confidence < 0.5


def test_most_labelled_answers_are_cited(real_index: SearchIndex):
    # A floor well under the measured figure (eval/README.md): catches a broken pipeline, not noise.
    questions = [q for q in load_labelled() if q.answerable]
    right = sum(cites_answer(answer_question(real_index, q.question), q) for q in questions)
    assert right / len(questions) >= 0.5


def test_cli_ask(tmp_path: Path):
    index_dir = tmp_path / "idx"
    cli = [sys.executable, "-m", "indexer.cli"]
    built = subprocess.run(
        [*cli, "index", str(REPO / "corpus"), "--index-dir", str(index_dir)], capture_output=True, text=True, cwd=REPO
    )
    assert built.returncode == 0, built.stderr
    asked = subprocess.run(
        [
            *cli,
            "ask",
            "Which company did Daimler team up with for Denza?",
            "--json",
            "-k",
            "2",
            "--index-dir",
            str(index_dir),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert asked.returncode == 0, asked.stderr
    data = json.loads(asked.stdout)
    assert data["answerable"] and "BYD Co" in data["citations"][0]["quote"] and len(data["passages"]) == 2
    text = subprocess.run(
        [*cli, "ask", "Which company did Daimler team up with for Denza?", "--index-dir", str(index_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert text.returncode == 0 and "[1]" in text.stdout and DAIMLER in text.stdout
    empty = subprocess.run([*cli, "ask", "  ", "--index-dir", str(index_dir)], capture_output=True, text=True, cwd=REPO)
    assert empty.returncode == 2 and "question is empty" in empty.stderr and "Traceback" not in empty.stderr
