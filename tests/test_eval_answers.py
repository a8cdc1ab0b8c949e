"""Q&A measurement code: labelled data integrity, metrics and calibration rules (no model needed)."""

import json
from pathlib import Path

import pytest

from eval.answers import (
    GoldQuestion,
    LabelledQuestion,
    contains_gold,
    labelled_metrics,
    load_labelled,
    load_realtimeqa,
)
from eval.qa_calibration import choose_threshold, expected_calibration_error, fit_slope, weight_grid
from eval.qa_report import render_markdown
from indexer.answer import NOT_FOUND, Answer, AnswerCitation
from indexer.corpus import load_corpus
from tests.conftest import SEED_CORPUS


def test_every_labelled_answer_is_exact_text_of_its_article():
    articles = {a.article_id: a for a in load_corpus(SEED_CORPUS)[0]}
    questions = load_labelled()
    assert len(questions) == 51 and sum(not q.answerable for q in questions) == 8
    for q in questions:
        assert q.answerable == bool(q.answers), q.id
        for article_id, text in q.answers:
            assert text in articles[article_id].text, (q.id, text)


def _answer(quotes: list[tuple[str, str]], answerable: bool = True) -> Answer:
    citations = [AnswerCitation(a, "t", None, None, None, 0, len(q), q) for a, q in quotes]
    return Answer("q", " ".join(q for _, q in quotes) if answerable else NOT_FOUND, answerable, 0.5, citations, [])


def test_labelled_metrics_count_cited_answers_and_abstentions():
    questions = [
        LabelledQuestion("1", "q", "factual", True, (("a", "BYD Co"),)),
        LabelledQuestion("2", "q", "multi_article", True, (("a", "$10 billion"), ("b", "$10 billion"))),
        LabelledQuestion("3", "q", "factual", True, (("a", "2005"),)),
        LabelledQuestion("4", "q", "unanswerable", False, ()),
        LabelledQuestion("5", "q", "unanswerable", False, ()),
    ]
    answers = [
        _answer([("a", "teamed up with BYD Co (比亞迪)")]),  # right
        _answer([("a", "pledged around $10 billion"), ("c", "about $10 billion")]),  # right, one article missing
        _answer([], answerable=False),  # abstained on an answerable question
        _answer([], answerable=False),  # right abstention
        _answer([("b", "something else")]),  # answered an unanswerable question
    ]
    m = labelled_metrics(answers, questions)
    assert m["answer_accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    assert m["accuracy_when_answered"] == 1.0
    assert m["abstention_precision"] == 0.5 and m["abstention_recall"] == 0.5
    assert m["multi_article_all_cited"] == 0.0
    # The answer text in the wrong article does not count.
    wrong_article = labelled_metrics([_answer([("b", "BYD Co")])], questions[:1])
    assert wrong_article["answer_accuracy"] == 0.0


def test_contains_gold_ignores_case_and_spacing():
    gold = GoldQuestion("1", "q", ("Mariah  Carey",), ("p",))
    assert contains_gold(_answer([("p", "Singer mariah carey topped the chart.")]), gold)
    assert not contains_gold(_answer([("p", "Carey topped the chart.")]), gold)
    assert not contains_gold(_answer([], answerable=False), gold)


def test_threshold_sits_in_the_widest_best_gap():
    scores = [0.9, 0.8, 0.7, 0.4, 0.3, 0.65]
    answerable = [True, True, True, False, False, False]
    choice = choose_threshold(scores, answerable)
    assert choice.value == pytest.approx(0.675) and choice.balanced_accuracy == 1.0
    separable = choose_threshold([0.9, 0.8, 0.3, 0.2], [True, True, False, False])
    assert separable.value == pytest.approx(0.55) and separable.margin == pytest.approx(0.5)


def test_slope_is_steeper_when_scores_separate_outcomes_cleanly():
    clean = fit_slope([0.2, 0.3, 0.7, 0.8], [False, False, True, True], 0.5)
    noisy = fit_slope([0.2, 0.3, 0.7, 0.8], [True, False, True, False], 0.5)
    assert clean > noisy


def test_weight_grid_and_calibration_error():
    grid = weight_grid()
    assert all(abs(w.dense + w.lexical + w.passage - 1) < 1e-9 and min(vars(w).values()) >= 0.1 for w in grid)
    assert len(grid) == 36
    assert expected_calibration_error([0.9, 0.9], [True, True]) == pytest.approx(0.1)


def test_tuning_takes_the_best_weights_then_the_smallest_pool_close_to_it():
    from eval.qa_calibration import tune_weights
    from indexer.answer import AnswerConfig

    def evaluate(config):
        w = config.weights
        return w.dense - 2 * abs(w.lexical - 0.2) + {5: 0.0, 10: 0.004, 20: 0.007}[config.candidates]

    chosen, table = tune_weights(evaluate, AnswerConfig())
    assert (chosen.weights.dense, chosen.weights.lexical, chosen.weights.passage) == (0.7, 0.2, 0.1)
    assert chosen.candidates == 10  # 20 is best, 10 within half a point of it, 5 is not
    assert table[0][0] == max(score for score, _ in table)


def test_load_realtimeqa_reads_one_split(tmp_path: Path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tp1\t1\n")
    rows = [
        {"_id": "q1", "question": "Who?", "answer_text": ["Ann"], "choices": ["Ann", "Bo"]},
        {"_id": "q2", "question": "What?", "answer_text": ["X"], "choices": ["X"]},
    ]
    (tmp_path / "answers.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert load_realtimeqa(tmp_path, "dev") == [GoldQuestion("q1", "Who?", ("Ann",), ("p1",))]


def test_report_renders_without_realtimeqa():
    metrics = labelled_metrics(
        [_answer([("a", "BYD Co")])], [LabelledQuestion("1", "q", "factual", True, (("a", "BYD"),))]
    )
    results = {
        "labelled": metrics,
        "labelled_never_abstaining": metrics,
        "threshold_choice": {"value": 0.5, "balanced_accuracy": 1.0, "margin": 0.1},
        "recalibrated_equals_shipped": True,
        "latency_seed_corpus": {"questions": 1, "median_ms": 10.0, "p95_ms": 12.0},
        "shipped_config": {"threshold": 0.5},
    }
    report = render_markdown(results)
    assert "| answer accuracy (1 answerable) | 100.0% |" in report and "10.0 ms" in report
