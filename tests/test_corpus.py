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


# ---- hostile input (reliability issue): each case is done for real, with counts -------------------


def test_binary_without_zero_bytes_and_invalid_utf8(tmp_path: Path):
    """Random bytes with no NUL are not text; a few bad bytes in real text are replaced, not dropped."""
    import random

    noise = bytes(b for b in random.Random(7).randbytes(20_000) if b != 0)
    (tmp_path / "noise.txt").write_bytes(noise)
    (tmp_path / "photo.html").write_bytes(b"\x89PNG\r\n\x1a\n" + noise)
    (tmp_path / "mixed.txt").write_bytes(b"Markets rallied \xff\xfe on Friday as caf\xe9 owners cheered.\n")
    (tmp_path / "control.md").write_bytes(b"\x01\x02\x03\x04\x05\x06\x07\x08" * 100)
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    assert [a.article_id for a in articles] == ["mixed"]
    assert "\ufffd" in articles[0].text and "Markets rallied" in articles[0].text
    reasons = dict(report.skipped)
    assert set(reasons) == {str(tmp_path / n) for n in ("noise.txt", "photo.html", "control.md")}
    assert all("binary or not UTF-8" in r or r == "binary file" for r in reasons.values())
    assert (report.loaded, len(report.skipped)) == (1, 3)
    assert len(warnings) == 3


def test_fifty_megabyte_file_is_skipped_and_nothing_else_is_lost(tmp_path: Path):
    line = b"The council voted again on the harbour budget late on Tuesday night.\n"
    with open(tmp_path / "huge.txt", "wb") as handle:
        for _ in range(50 * 1024 * 1024 // len(line) + 1):
            handle.write(line)
    assert (tmp_path / "huge.txt").stat().st_size > 50 * 1024 * 1024
    huge_record = json.dumps({"_id": "big", "text": "word " * (5 * 1024 * 1024)})
    (tmp_path / "feed.jsonl").write_text(json.dumps({"_id": "small", "text": "A short wire story."}) + "\n"
                                          + huge_record + "\n")
    (tmp_path / "ok.txt").write_text("A normal story about the harbour.")
    articles, report = load_corpus(tmp_path, max_file_bytes=20 * 1024 * 1024)
    assert sorted(a.article_id for a in articles) == ["ok", "small"]
    reasons = dict(report.skipped)
    assert "20 MB limit" in reasons[str(tmp_path / "huge.txt")]
    assert "larger than" in reasons[f"{tmp_path / 'feed.jsonl'}:2"]
    assert report.summary() == "2 loaded, 2 skipped, 0 duplicates"


def test_empty_and_whitespace_only_files(tmp_path: Path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.md").write_text("   \n\n\t\n")
    (tmp_path / "header_only.txt").write_text(" date 2024-01-01 Wire\n")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "tags_only.html").write_text("<html><body><script>x()</script></body></html>")
    (tmp_path / "ok.txt").write_text("Real text.")
    articles, report = load_corpus(tmp_path)
    assert [a.article_id for a in articles] == ["ok"]
    reasons = {Path(name).name: reason for name, reason in report.skipped}
    assert reasons == {"empty.txt": "empty file", "blank.md": "no text", "header_only.txt": "no text",
                       "tags_only.html": "no text"}


def test_hostile_html(tmp_path: Path):
    (tmp_path / "page.html").write_text(
        "<!doctype html><html><head><title>Budget &#x1F4B0; &amp; &quot;cuts&quot; &bogus;</title>"
        "<script>document.write('<p>injected</p>')</script>"
        "<script type='module'>if (a < b && c > d) { alert('x') }</script>"
        "<style>body::after { content: '<b>styled</b>' }</style><!-- <p>commented</p> -->"
        "<noscript><p>enable js</p></noscript></head><body>"
        "<p onclick=\"alert('x')\">Council &mdash; approved &#8364;5m &lt;script&gt; text.</p>"
        "<svg><text>svg label</text></svg><iframe src='javascript:alert(1)'></iframe>"
        "<p>Unclosed <b>bold <i>italic</p><div>Last&nbsp;line</div>"
        "<script>never closed <p>swallowed"
    )
    [article], report = load_corpus(tmp_path)
    assert article.title == 'Budget 💰 & "cuts" &bogus;'
    assert "Council — approved €5m <script> text." in article.text
    assert "Unclosed bold italic" in article.text and "Last line" in article.text
    for hidden in ("injected", "alert", "styled", "commented", "enable js", "svg label", "swallowed"):
        assert hidden not in article.text, hidden
    assert report.summary() == "1 loaded, 0 skipped, 0 duplicates"


def test_deeply_nested_directories(tmp_path: Path):
    """1,500 levels: os.walk would recurse past Python's limit; the loader must not."""
    depth = 1500
    deep = tmp_path
    for _ in range(depth):  # one level at a time: Path.mkdir(parents=True) itself recurses
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.txt").write_text("The story at the very bottom.")
    (tmp_path / "top.txt").write_text("The story at the top.")
    try:
        articles, report = load_corpus(tmp_path)
    finally:
        # Bottom up, one level at a time: shutil.rmtree (and so pytest's clean-up) recurses too.
        (deep / "bottom.txt").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent
    assert sorted(a.article_id for a in articles) == ["d/" * depth + "bottom", "top"]
    assert report.summary() == "2 loaded, 0 skipped, 0 duplicates"


def test_symlink_loops_of_files_and_directories(tmp_path: Path):
    (tmp_path / "a.txt").symlink_to(tmp_path / "b.txt")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "up").symlink_to(tmp_path)
    (sub / "self").symlink_to(sub)
    (sub / "story.txt").write_text("Only real story.")
    (tmp_path / "alias.txt").symlink_to(sub / "story.txt")  # a file symlink is followed, and deduplicated
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    assert [a.article_id for a in articles] == ["alias"]
    assert report.duplicates == [("sub/story", "alias")]
    assert {Path(name).name for name, _ in report.skipped} == {"a.txt", "b.txt"}
    assert all("symbolic links" in reason for _, reason in report.skipped)


def test_files_vanishing_during_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Files listed and then deleted (or replaced by a directory) before they are read."""
    import indexer.corpus as corpus

    for name in ("a.txt", "b.txt", "c.jsonl", "d.md", "e.txt"):
        (tmp_path / name).write_text(json.dumps({"_id": name, "text": f"text of {name}"}) if name.endswith("l")
                                     else f"Story {name}.")
    real_walk = corpus._walk

    def walk_then_vanish(root, skip):
        listed = list(real_walk(root, skip))  # the scan has seen every file...
        (tmp_path / "b.txt").unlink()  # ...and then some disappear
        (tmp_path / "c.jsonl").unlink()
        (tmp_path / "e.txt").unlink()
        (tmp_path / "e.txt").mkdir()
        return iter(listed)

    monkeypatch.setattr(corpus, "_walk", walk_then_vanish)
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    assert [a.article_id for a in articles] == ["a", "d"]
    reasons = {Path(name).name: reason for name, reason in report.skipped}
    assert set(reasons) == {"b.txt", "c.jsonl", "e.txt"}
    assert "No such file" in reasons["b.txt"] and "No such file" in reasons["c.jsonl"]
    assert reasons["e.txt"].startswith("cannot be read")
    assert report.summary() == "2 loaded, 3 skipped, 0 duplicates"


def test_a_directory_vanishing_during_the_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import indexer.corpus as corpus

    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "x.txt").write_text("Kept story.")
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "y.txt").write_text("Vanishing story.")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "gone":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_scandir(path)

    monkeypatch.setattr(corpus.os, "scandir", scandir)
    articles, report = load_corpus(tmp_path)
    assert [a.article_id for a in articles] == ["keep/x"]
    assert report.skipped == [(str(tmp_path / "gone"), "cannot be listed (No such file or directory)")]


def test_header_with_an_impossible_date_is_still_a_header(tmp_path: Path, caplog):
    (tmp_path / "a.txt").write_text(" date 2021-02-30 Wire\nThe headline\n\nBody text here.\n")
    with caplog.at_level("WARNING", logger="indexer.corpus"):
        (article,), _ = load_corpus(tmp_path)
    assert (article.title, article.date, article.source) == ("The headline", None, "Wire")
    assert not article.text.startswith(" date")
    assert "2021-02-30 is not a calendar date" in caplog.text


@pytest.mark.parametrize("first_line", ["date 1234-56-78 was set as the deadline", "date 2021-02-3012 Wire"])
def test_prose_that_starts_like_a_header_stays_text(tmp_path: Path, first_line: str):
    (tmp_path / "a.txt").write_text(f"{first_line}\nMore text.\n")
    (article,), _ = load_corpus(tmp_path)
    assert (article.title, article.date, article.source) == (first_line, None, None)
    assert article.text.startswith(first_line)
