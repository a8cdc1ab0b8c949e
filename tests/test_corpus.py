import gzip
import json
import os
from pathlib import Path

import pytest

from indexer.corpus import corpus_fingerprint, load_corpus
from indexer.errors import CorpusError
from tests.conftest import DAIMLER, SEED_CORPUS, XIAOMI_BLOOMBERG, XIAOMI_HT


def test_seed_articles_have_header_metadata_and_titles():
    articles, report = load_corpus(SEED_CORPUS)
    by_id = {a.article_id: a for a in articles}
    assert report.loaded == 3 and not report.skipped and not report.duplicates
    assert by_id[DAIMLER].date == "2018-08-07" and by_id[DAIMLER].source == "Bloomberg"
    assert by_id[XIAOMI_HT].title == "Xiaomi bets on Beijing Automotive to push its EV dreams"
    assert by_id[XIAOMI_HT].source == "HT Auto"
    # No header line: no date or source, title is the first line without its bullet.
    assert by_id[XIAOMI_BLOOMBERG].date is None and by_id[XIAOMI_BLOOMBERG].source is None
    assert by_id[XIAOMI_BLOOMBERG].title == "Smartphone giant has had discussions with Brilliance, Chery"
    assert not by_id[DAIMLER].text.startswith(" date")


def test_markdown_front_matter_and_heading(tmp_path: Path):
    (tmp_path / "a.md").write_text("---\ndate: 2024-01-02\nsource: Wire\n---\n# Big News\n\nBody text here.\n")
    (tmp_path / "b.md").write_text("# Only A Heading\n\nMore text.\n")
    articles, _ = load_corpus(tmp_path)
    a, b = sorted(articles, key=lambda x: x.article_id)
    assert (a.title, a.date, a.source) == ("Big News", "2024-01-02", "Wire")
    assert b.title == "Only A Heading"


def test_html_strips_tags_scripts_and_decodes_entities(tmp_path: Path):
    (tmp_path / "page.html").write_text(
        "<html><head><title>EV &amp; Batteries</title><meta property='og:site_name' content='Daily'>"
        "<script>var x = '<p>hidden</p>';</script><style>p{}</style></head>"
        "<body><p>First &lt;para&gt; &eacute;t&eacute;.</p><p>Second</p></body></html>"
    )
    [article], _ = load_corpus(tmp_path)
    assert article.title == "EV & Batteries"
    assert article.source == "Daily"
    assert "First <para> été." in article.text and "Second" in article.text
    assert "hidden" not in article.text and "var x" not in article.text


def test_jsonl_records_ids_dates_and_bad_lines(tmp_path: Path):
    lines = [
        json.dumps({"_id": "n1", "title": "T1", "text": "Alpha text", "publish_date": "2023-05-01T10:00:00Z"}),
        json.dumps({"_id": "n2", "text": "Gamma", "date": "2020/01/03"}),
        json.dumps({"id": 7, "text": "Beta text\nmore", "date": "not a date", "source": "S", "url": "http://x"}),
        "{not json",
        json.dumps({"_id": "n3", "text": ""}),
        json.dumps(["a list"]),
    ]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    by_id = {a.article_id: a for a in articles}
    assert set(by_id) == {"n1", "n2", "7"}
    assert by_id["n2"].date == "2020-01-03"
    assert by_id["n1"].date == "2023-05-01" and by_id["n1"].title == "T1"
    assert by_id["7"].date is None and by_id["7"].title == "Beta text" and by_id["7"].url == "http://x"
    assert len(report.skipped) == 3
    assert any("docs.jsonl:4" in w and "malformed JSON" in w for w in warnings)


def test_gzipped_jsonl(tmp_path: Path):
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"_id": "g", "text": "gz text"}) + "\n")
    [article], _ = load_corpus(tmp_path)
    assert article.article_id == "g"


def test_bad_files_are_skipped_with_named_warnings(tmp_path: Path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 society news".encode("latin-1"))
    (tmp_path / "big.txt").write_text("x" * 2000)
    (tmp_path / "ok.txt").write_text("Fine article")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append, max_file_bytes=1000)
    ids = {a.article_id for a in articles}
    assert ids == {"latin1", "ok"}  # invalid UTF-8 is decoded with replacements, not dropped
    skipped = dict(report.skipped)
    assert skipped[str(tmp_path / "empty.txt")] == "empty file"
    assert skipped[str(tmp_path / "binary.txt")] == "binary file"
    assert "limit" in skipped[str(tmp_path / "big.txt")]
    assert all(any(name in w for w in warnings) for name in skipped)


def test_duplicates_are_indexed_once(tmp_path: Path):
    (tmp_path / "a.txt").write_text("Same story.\n")
    (tmp_path / "b.txt").write_text("Same   story.\n\n")
    (tmp_path / "c.txt").write_text("Other story.\n")
    articles, report = load_corpus(tmp_path)
    assert [a.article_id for a in articles] == ["a", "c"]
    assert report.duplicates == [("b", "a")]


def test_nested_directories_and_symlink_loops(tmp_path: Path):
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "story.txt").write_text("Deep story text")
    os.symlink(tmp_path, deep / "loop")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    articles, report = load_corpus(tmp_path)
    assert [a.article_id for a in articles] == ["a/b/c/story"]
    assert any("dangling" in name for name, _ in report.skipped)


def test_missing_corpus_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope")


def test_fingerprint_changes_with_content(tmp_path: Path):
    (tmp_path / "a.txt").write_text("One")
    first = corpus_fingerprint(load_corpus(tmp_path)[0])
    assert first == corpus_fingerprint(load_corpus(tmp_path)[0])
    (tmp_path / "a.txt").write_text("Two")
    assert first != corpus_fingerprint(load_corpus(tmp_path)[0])
