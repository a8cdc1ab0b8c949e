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


def test_composed_decomposed_fullwidth_and_ligature_forms_meet_the_typed_form():
    assert analyze("Zu\u0308rich") == analyze("Zürich") == ["zürich"]
    assert analyze("\uff5a\uff45\uff42\uff52\uff41") == analyze("zebra")  # fullwidth
    assert analyze("\ufb01brosis") == analyze("fibrosis")  # the "fi" ligature of PDF extractions
    assert analyze("STRASSE") == analyze("Straße")


def test_combining_marks_stay_inside_words_and_offsets_are_the_original_text():
    text = "A\u030angstro\u0308m and नमस्ते"
    terms = list(terms_with_offsets(text))
    assert [t for t, _, _ in terms] == ["ångström", "नमस्ते"]
    assert [text[s:e] for _, s, e in terms] == ["A\u030angstro\u0308m", "नमस्ते"]  # highlights cover whole words


def test_a_folded_word_is_split_again():
    """Folding can change what a word is made of: the pieces are what a typed query gives."""
    assert analyze("\uff83\uff7d\uff84") == analyze("テスト") == ["テス", "スト"]  # halfwidth katakana -> bigrams
    assert analyze("\u00bd") == analyze("1/2")  # the vulgar fraction: "1", "2"
    assert analyze("infor\u00admation") == analyze("information")  # a soft hyphen joins, and is dropped
    text = "see \uff83\uff7d\uff84 here"
    assert {(text[s:e]) for t, s, e in terms_with_offsets(text) if t != "see"} == {"\uff83\uff7d\uff84", "here"}


def test_ascii_text_takes_the_fast_path_with_the_same_terms():
    text = "Daimler's BYD-made Denza EV: 10 cars, e.g. in 2024"
    assert analyze(text) == analyze(text + " \u00e9")[:-1]  # the non-ASCII path gives the same terms
