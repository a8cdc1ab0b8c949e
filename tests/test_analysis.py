from indexer.analysis import analyze, terms_with_offsets


def test_cjk_runs_become_bigrams():
    assert analyze("比亞迪") == ["比亞", "亞迪"]
    assert analyze("車") == ["車"]


def test_stemming_stopwords_and_offsets():
    text = "Who is negotiating with the carmakers?"
    assert analyze(text) == ["negoti", "carmak"]
    for term, start, end in terms_with_offsets(text):
        assert text[start:end].lower().startswith(term[:4])


def test_mixed_script_and_numbers():
    assert analyze("BYD Co (比亞迪) $10 billion") == ["byd", "co", "比亞", "亞迪", "10", "billion"]
