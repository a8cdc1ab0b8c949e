import gzip
import json
import os
import threading
from pathlib import Path

import pytest

from indexer.build import build_index
from indexer.corpus import corpus_fingerprint, load_corpus
from indexer.embedding import FakeEmbedder
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
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    assert [a.article_id for a in articles] == ["a", "c"]
    assert report.duplicates == [("b", "a")]
    assert warnings == [f"duplicate b ({tmp_path / 'b.txt'}): same text as a ({tmp_path / 'a.txt'}), indexed once"]


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
    assert len(warnings) == 4  # the three skipped files, and the bytes replaced in mixed.txt
    assert any(w.startswith(f"{tmp_path / 'mixed.txt'}: invalid UTF-8") for w in warnings)


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
    assert f"{tmp_path / 'a.txt'}:1: header date '2021-02-30' is not a calendar date" in caplog.text


@pytest.mark.parametrize("first_line", ["date 1234-56-78 was set as the deadline", "date 2021-02-3012 Wire"])
def test_prose_that_starts_like_a_header_stays_text(tmp_path: Path, first_line: str):
    (tmp_path / "a.txt").write_text(f"{first_line}\nMore text.\n")
    (article,), _ = load_corpus(tmp_path)
    assert (article.title, article.date, article.source) == (first_line, None, None)
    assert article.text.startswith(first_line)


# ---- black-box review findings: each would crash, hang or lose data silently without its fix ----


def _flood_guard(warnings: list[str], limit: int = 50):
    """A warn callback that fails the test on a flood of warnings instead of letting it run forever."""

    def warn(message: str) -> None:
        warnings.append(message)
        if len(warnings) > limit:
            raise AssertionError(f"more than {limit} warnings, the last: {message[:200]}")

    return warn


def test_jsonl_records_with_a_lone_surrogate_are_skipped_and_the_rest_indexed(tmp_path: Path):
    """JSON's "\ud800" decodes to a lone surrogate, which cannot be hashed (UTF-8) or stored."""
    lines = [
        r'{"id": "s1", "text": "surrogate \ud800 in the text"}',
        r'{"id": "s\udc00", "text": "surrogate in the id"}',
        r'{"id": "s3", "title": "T \ud800", "text": "surrogate in the title"}',
        r'{"id": "s4", "source": "W\udfff", "text": "surrogate in the source"}',
        r'{"id": "s5", "url": "https://x.example/\ud800", "text": "surrogate in the url"}',
        r'{"id": "s6", "date": "2024-01-01\ud800", "text": "surrogate in the date"}',
        r'{"id": "ok1", "text": "an emoji as a pair \ud83d\ude00 is fine", "unused": "\ud800"}',
        r'{"id": "ok2", "text": "a plain story"}',
    ]
    (tmp_path / "feed.jsonl").write_text("\n".join(lines) + "\n")
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    assert sorted(a.article_id for a in articles) == ["ok1", "ok2"]
    assert "\U0001f600" in next(a.text for a in articles if a.article_id == "ok1")
    reasons = dict(report.skipped)
    assert set(reasons) == {f"{tmp_path / 'feed.jsonl'}:{n}" for n in range(1, 7)}
    for number, field in enumerate(("text", "id", "title", "source", "url", "date"), 1):
        assert reasons[f"{tmp_path / 'feed.jsonl'}:{number}"].startswith(f"{field} contains U+D"), field
        assert "surrogate pair" in reasons[f"{tmp_path / 'feed.jsonl'}:{number}"]
    build_index(articles, tmp_path / "index", FakeEmbedder(), progress=False)  # hashing and storing work


def test_a_file_whose_name_is_not_utf8_is_skipped_and_the_rest_indexed(tmp_path: Path):
    folder = os.fsencode(tmp_path / "corpus")
    try:
        os.makedirs(folder + b"/d\xe9p")
        with open(folder + b"/caf\xe9.txt", "wb") as handle:
            handle.write(b"Title\nbody of the cafe story")
    except OSError:  # a file system that insists on UTF-8 names (macOS)
        pytest.skip("this file system refuses names that are not UTF-8")
    for name in (b"/d\xe9p/a.txt", b"/d\xe9p/b.txt", b"/feed\xff.jsonl"):
        with open(folder + name, "wb") as handle:
            handle.write(b'{"id": "j", "text": "a record"}' if name.endswith(b"l") else b"Inside a bad folder")
    (tmp_path / "corpus" / "ok.txt").write_text("A story with a good name.")
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path / "corpus", warn=warnings.append)
    assert [a.article_id for a in articles] == ["ok"]
    shown = {Path(name).name: reason for name, reason in report.skipped}
    assert set(shown) == {"caf\\xe9.txt", "d\\xe9p", "feed\\xff.jsonl"}  # the folder once, not once per file
    assert all("not valid UTF-8" in reason for reason in shown.values())
    assert all(w.encode("utf-8") for w in warnings)  # printable: no lone surrogates left in a warning
    build_index(articles, tmp_path / "index", FakeEmbedder(), progress=False)
    # Given as the corpus itself, such a file is skipped the same way.
    articles, report = load_corpus(os.fsdecode(folder + b"/caf\xe9.txt"), warn=warnings.append)
    assert not articles and "not valid UTF-8" in report.skipped[0][1]


@pytest.mark.skipif(not os.path.exists("/dev/urandom"), reason="needs /dev/urandom and /dev/zero")
def test_links_to_devices_are_skipped_with_one_warning_each(tmp_path: Path):
    (tmp_path / "random.jsonl").symlink_to("/dev/urandom")  # endless lines of garbage
    (tmp_path / "random.jsonl.gz").symlink_to("/dev/urandom")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    (tmp_path / "null.md").symlink_to("/dev/null")
    (tmp_path / "ok.jsonl").write_text(json.dumps({"id": "ok", "text": "A real story."}) + "\n")
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=_flood_guard(warnings))
    assert [a.article_id for a in articles] == ["ok"]
    reasons = {Path(name).name: reason for name, reason in report.skipped}
    assert set(reasons) == {"random.jsonl", "random.jsonl.gz", "zero.txt", "null.md"}
    assert all(r == "cannot be read: a character device, not a regular file" for r in reasons.values())
    assert len(warnings) == 4


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_skipped_not_waited_on(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe.jsonl")  # opening a pipe that no one writes to blocks forever
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "ok.txt").write_text("A real story.")
    results: list = []
    worker = threading.Thread(target=lambda: results.append(load_corpus(tmp_path)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the loader is blocked opening a named pipe"
    [(articles, report)] = results
    assert [a.article_id for a in articles] == ["ok"]
    assert {Path(name).name: reason for name, reason in report.skipped} == {
        "pipe.jsonl": "cannot be read: a named pipe, not a regular file",
        "pipe.txt": "cannot be read: a named pipe, not a regular file",
    }


def test_bad_optional_jsonl_fields_are_dropped_with_a_warning_naming_the_line(tmp_path: Path):
    lines = [
        {"id": "d1", "text": "Impossible date.", "date": "2021-02-30"},
        {"id": "d2", "text": "Not a date.", "publish_date": "next Tuesday"},
        {"id": "d3", "text": "A number as date.", "date": 20210101},
        {"id": "t1", "text": "Headline from the text\nbody", "title": 42, "source": ["Wire"]},
        {"id": "u1", "text": "Script url.", "url": "javascript:alert(1)"},
        {"id": "u2", "text": "Not a url.", "url": "not a url"},
        {"id": "u3", "text": "Relative url.", "url": "/news/story", "source": None, "title": None},
        {"id": "u4", "text": "Schemes are case-insensitive.", "url": " HTTPS://News.example/u4 "},
        {"id": "good", "text": "All fields fine.", "title": "T", "source": "Wire", "date": "2024-05-06",
         "url": "https://news.example/good"},
    ]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    by_id = {a.article_id: a for a in articles}
    assert len(by_id) == 9 and not report.skipped  # every article is kept
    assert by_id["u4"].url == "HTTPS://News.example/u4"
    assert all(by_id[i].date is None for i in ("d1", "d2", "d3"))
    assert (by_id["t1"].title, by_id["t1"].source) == ("Headline from the text", None)
    assert all(by_id[i].url is None for i in ("u1", "u2", "u3"))
    good = by_id["good"]
    assert (good.title, good.source, good.date, good.url) == ("T", "Wire", "2024-05-06", "https://news.example/good")
    assert warnings == [
        f"{feed}:1: date '2021-02-30' is not a calendar date; the article is indexed undated",
        f"{feed}:2: publish_date 'next Tuesday' is not a calendar date; the article is indexed undated",
        f"{feed}:3: date 20210101 is not a calendar date; the article is indexed undated",
        f"{feed}:4: title is a number, not a string; treated as missing",
        f"{feed}:4: source is a list, not a string; treated as missing",
        f"{feed}:5: url 'javascript:alert(1)' is not an http:// or https:// URL; the article is indexed without it",
        f"{feed}:6: url 'not a url' is not an http:// or https:// URL; the article is indexed without it",
        f"{feed}:7: url '/news/story' is not an http:// or https:// URL; the article is indexed without it",
    ]


def test_jsonl_ids_must_be_strings_or_integers_and_sources_plain_text(tmp_path: Path):
    lines = [
        {"id": {"a": 1}, "text": "An object as id."},
        {"id": True, "text": "A boolean as id."},
        {"id": ["x"], "text": "A list as id."},
        {"id": 7, "text": "An integer id is fine."},
        {"id": "cr", "text": "Old Mac\rline breaks\r\nand Windows ones.", "source": "Wire\x07Service"},
    ]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    by_id = {a.article_id: a for a in articles}
    assert sorted(by_id) == ["7", "cr"]
    assert [reason for _, reason in report.skipped] == [
        "id is an object; give a string or an integer",
        "id is a boolean; give a string or an integer",
        "id is a list; give a string or an integer",
    ]
    assert by_id["cr"].text == "Old Mac\nline breaks\nand Windows ones." and by_id["cr"].source is None
    assert warnings[-1].startswith(f"{feed}:5: source 'Wire\\x07Service' contains control characters")


def test_invalid_utf8_in_jsonl_is_replaced_with_one_warning_per_file(tmp_path: Path):
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b'{"id": "a", "text": "fine"}\n{"id": "b", "text": "caf\xe9"}\n'
                     b'{"id": "c", "text": "\xff\xfe x"}\n')
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    assert [a.article_id for a in articles] == ["a", "b", "c"] and not report.skipped
    assert articles[1].text == "caf\ufffd"
    assert warnings == [f"{feed}:2: invalid UTF-8, undecodable bytes replaced with U+FFFD (later lines not reported)"]


def test_bad_markdown_and_html_metadata_is_dropped_with_a_warning(tmp_path: Path):
    (tmp_path / "a.md").write_text("---\ntitle: T\ndate: 2021-13-01\nurl: javascript:alert(1)\n---\n# H\n\nBody.\n")
    (tmp_path / "b.html").write_text(
        "<html><head><title>P</title><meta name='date' content='someday'>"
        "<meta property='og:url' content='javascript:alert(1)'></head><body><p>Page body.</p></body></html>"
    )
    (tmp_path / "c.md").write_text("---\ndate: 2024-02-29\nurl: https://news.example/c\n---\nLeap day story.\n")
    warnings: list[str] = []
    articles, _ = load_corpus(tmp_path, warn=warnings.append)
    a, b, c = sorted(articles, key=lambda x: x.article_id)
    assert (a.date, a.url, b.date, b.url) == (None, None, None, None)
    assert (c.date, c.url) == ("2024-02-29", "https://news.example/c")
    assert warnings == [
        f"{tmp_path / 'a.md'}:3: date '2021-13-01' is not a calendar date; the article is indexed undated",
        f"{tmp_path / 'a.md'}:4: url 'javascript:alert(1)' is not an http:// or https:// URL; "
        "the article is indexed without it",
        f"{tmp_path / 'b.html'}: <meta> date 'someday' is not a calendar date; the article is indexed undated",
        f"{tmp_path / 'b.html'}: url 'javascript:alert(1)' is not an http:// or https:// URL; "
        "the article is indexed without it",
    ]


def test_a_duplicate_id_names_both_places(tmp_path: Path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "j1", "text": "First."}) + "\n")
    (tmp_path / "b.jsonl").write_text("\n" + json.dumps({"id": "j1", "text": "Second."}) + "\n")
    (tmp_path / "story.md").write_text("Markdown story.")
    (tmp_path / "story.txt").write_text("Text story.")
    warnings: list[str] = []
    articles, report = load_corpus(tmp_path, warn=warnings.append)
    assert sorted(a.text for a in articles) == ["First.", "Markdown story."]
    assert report.skipped == [
        (f"{tmp_path / 'b.jsonl'}:2", f"id 'j1' was already loaded from {tmp_path / 'a.jsonl'}:1"),
        (str(tmp_path / "story.txt"), f"id 'story' was already loaded from {tmp_path / 'story.md'}"),
    ]
    assert warnings == [f"skipped {name}: {reason}" for name, reason in report.skipped]


def test_jsonl_lines_json_cannot_decode_and_corrupt_gzip_are_skipped(tmp_path: Path):
    """json.loads raises ValueError (huge integers) and RecursionError (deep nesting); zlib.error on bad .gz."""
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        '{"id": ' + "1" * 5000 + ', "text": "x"}\n' + "[" * 100_000 + "\n" + json.dumps({"id": "ok", "text": "Fine."})
    )
    stream = gzip.compress(b"".join(json.dumps({"id": f"g{i}", "text": f"story {i}"}).encode() + b"\n"
                                    for i in range(300)))
    broken = bytearray(stream)
    broken[len(broken) // 2] ^= 0x55  # a bad deflate block: zlib.error, not OSError
    (tmp_path / "broken.jsonl.gz").write_bytes(bytes(broken))
    articles, report = load_corpus(tmp_path, warn=lambda message: None)
    assert "ok" in {a.article_id for a in articles}
    reasons = dict(report.skipped)
    assert reasons[f"{feed}:1"].startswith("malformed JSON (Exceeds the limit")
    assert reasons[f"{feed}:2"] == "malformed JSON (nested too deeply)"
    assert reasons[str(tmp_path / "broken.jsonl.gz")].startswith("cannot be read")


def test_jsonl_with_a_byte_order_mark_keeps_its_first_record(tmp_path: Path):
    record = json.dumps({"id": "first", "text": "One."}).encode()
    (tmp_path / "feed.jsonl").write_bytes(b"\xef\xbb\xbf" + record + b"\n")
    articles, report = load_corpus(tmp_path)
    assert [a.article_id for a in articles] == ["first"] and not report.skipped


@pytest.mark.parametrize("value", ["2020/1/1a", "2020/12/3b"])
def test_slashed_dates_with_trailing_letters_do_not_crash(tmp_path: Path, value: str):
    (tmp_path / "a.md").write_text(f"---\ndate: {value}\n---\nBody.\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "b", "text": "Other.", "date": value}) + "\n")
    articles, report = load_corpus(tmp_path)
    assert len(articles) == 2 and not report.skipped
