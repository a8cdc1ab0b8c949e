"""The embedding cache: unchanged chunks are never embedded twice, and a crash cannot corrupt it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import indexer.build
from indexer.build import build_index, chunk_articles
from indexer.chunking import ChunkerConfig
from indexer.corpus import Article, load_corpus
from indexer.embedding import FakeEmbedder
from indexer.embedding_cache import CACHE_DIR, CACHE_NAME, EmbeddingCache
from indexer.errors import IncompatibleIndex
from indexer.search import SearchIndex
from tests.conftest import DAIMLER, REPO, SEED_CORPUS, XIAOMI_HT


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, recording every text it is asked to embed."""

    def __init__(self, dimension: int = 64, backend: str = "fake") -> None:
        super().__init__(dimension)
        self.backend = backend
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return super().embed(texts)


def _chunk_count(articles: list[Article]) -> int:
    return len(chunk_articles(articles, ChunkerConfig(), progress=False))


def _cache_rows(root: Path) -> int:
    with sqlite3.connect(root / CACHE_DIR / CACHE_NAME) as db:
        return db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]


def test_reindexing_an_unchanged_corpus_embeds_nothing(tmp_path: Path):
    articles = load_corpus(SEED_CORPUS)[0]
    embedder = CountingEmbedder()
    first = build_index(articles, tmp_path, embedder, progress=False)
    assert first.embedded == first.chunks == len(embedder.texts) and first.reused == 0
    before = SearchIndex.load(tmp_path, embedder).search("Xiaomi license", k=5, mode="dense")

    embedder.texts.clear()
    second = build_index(articles, tmp_path, embedder, progress=False)
    assert embedder.texts == []
    assert second.embedded == 0 and second.reused == second.chunks == first.chunks
    after = SearchIndex.load(tmp_path, embedder)
    assert after.index_id != first.index_id
    assert [(h.chunk_id, h.score) for h in after.search("Xiaomi license", k=5, mode="dense")] == [
        (h.chunk_id, h.score) for h in before
    ]


def test_changing_one_article_re_embeds_only_its_chunks(tmp_path: Path):
    articles = load_corpus(SEED_CORPUS)[0]
    embedder = CountingEmbedder()
    build_index(articles, tmp_path, embedder, progress=False)
    edited = [
        replace(a, text=a.text + "\n\nUpdate: BYD and Daimler added a second Denza plant in Shenzhen.")
        if a.article_id == DAIMLER else a
        for a in articles
    ]
    embedder.texts.clear()
    result = build_index(edited, tmp_path, embedder, progress=False)
    assert embedder.texts, "the edited article's new chunks must be embedded"
    daimler_chunks = _chunk_count([a for a in edited if a.article_id == DAIMLER])
    assert 0 < result.embedded == len(embedder.texts) <= daimler_chunks
    assert all(text.startswith(next(a.title for a in edited if a.article_id == DAIMLER)) for text in embedder.texts)
    assert result.reused == result.chunks - result.embedded
    hit = SearchIndex.load(tmp_path, embedder).search("second Denza plant in Shenzhen", k=1, mode="lexical")[0]
    assert hit.citation.article_id == DAIMLER and "Shenzhen" in hit.text


def test_deleting_an_article_removes_it_from_results_and_the_cache(tmp_path: Path):
    articles = load_corpus(SEED_CORPUS)[0]
    embedder = CountingEmbedder()
    build_index(articles, tmp_path, embedder, progress=False)
    kept = [a for a in articles if a.article_id != XIAOMI_HT]
    embedder.texts.clear()
    result = build_index(kept, tmp_path, embedder, progress=False)
    assert embedder.texts == [] and result.embedded == 0
    index = SearchIndex.load(tmp_path, embedder)
    for mode in ("hybrid", "dense", "lexical"):
        assert XIAOMI_HT not in {h.citation.article_id for h in index.search("Xiaomi electric car", k=50, mode=mode)}
    assert index.article(XIAOMI_HT) is None
    assert _cache_rows(tmp_path) == result.chunks  # the deleted article's vectors are gone


def test_another_backend_of_the_same_model_does_not_reuse_vectors(tmp_path: Path):
    articles = load_corpus(SEED_CORPUS)[0]
    build_index(articles, tmp_path, CountingEmbedder(backend="a"), progress=False)
    other = CountingEmbedder(backend="b")
    result = build_index(articles, tmp_path, other, progress=False)
    assert result.embedded == result.chunks == len(other.texts)
    assert SearchIndex.load(tmp_path, other).manifest.embedder_backend == "b"


def test_identical_texts_are_embedded_once(tmp_path: Path):
    text = "Same wire story, published twice under two ids. " * 3
    embedder = CountingEmbedder()
    result = build_index([Article("a", "Wire", text), Article("b", "Wire", text + " ")], tmp_path, embedder,
                         progress=False)
    assert result.chunks == 2 and len(embedder.texts) == 1


def test_cache_can_be_turned_off(tmp_path: Path):
    articles = load_corpus(SEED_CORPUS)[0]
    embedder = CountingEmbedder()
    build_index(articles, tmp_path, embedder, progress=False, cache=False)
    result = build_index(articles, tmp_path, embedder, progress=False, cache=False)
    assert result.embedded == result.chunks and not (tmp_path / CACHE_DIR).exists()


class FailsAfter(CountingEmbedder):
    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches = batches

    def embed(self, texts):
        if self.batches == 0:
            raise RuntimeError("power cut")
        self.batches -= 1
        return super().embed(texts)


def _many_articles(n: int) -> list[Article]:
    return [Article(f"a{i}", f"Story {i}", f"Report number {i} about batteries and car plant {i}.") for i in range(n)]


def test_an_interrupted_build_keeps_the_batches_it_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(indexer.build, "EMBED_BATCH", 4)
    articles = _many_articles(20)
    with pytest.raises(RuntimeError, match="power cut"):
        build_index(articles, tmp_path, FailsAfter(batches=3), progress=False)
    assert _cache_rows(tmp_path) == 12
    embedder = CountingEmbedder()
    result = build_index(articles, tmp_path, embedder, progress=False)
    assert result.embedded == len(embedder.texts) == 8 and result.reused == 12


def test_sigkill_mid_build_leaves_a_usable_cache(tmp_path: Path):
    """A hard kill while batches are being committed: the cache opens cleanly and keeps whole batches."""
    root = tmp_path / "index"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import indexer.build
        from indexer.build import build_index
        from indexer.corpus import Article
        from indexer.embedding import FakeEmbedder

        class Slow(FakeEmbedder):
            def embed(self, texts):
                print("batch", flush=True)
                time.sleep(0.05)
                return super().embed(texts)

        indexer.build.EMBED_BATCH = 5
        articles = [Article(f"a{{i}}", f"Story {{i}}", f"Report {{i}} on batteries.") for i in range(400)]
        build_index(articles, Path({str(root)!r}), Slow(), progress=False)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for _ in range(5):
        assert process.stdout.readline() == "batch\n"
    process.kill()
    process.wait()
    path = root / CACHE_DIR / CACHE_NAME
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    assert rows % 5 == 0 and 5 <= rows < 400  # whole batches only
    articles = [Article(f"a{i}", f"Story {i}", f"Report {i} on batteries.") for i in range(400)]
    embedder = CountingEmbedder()
    result = build_index(articles, root, embedder, progress=False)
    assert result.reused == rows and result.embedded == 400 - rows
    with EmbeddingCache.for_index(root, embedder) as cache:
        assert len(cache) == 400


def test_a_garbled_cache_is_rebuilt_not_fatal(tmp_path: Path):
    articles = load_corpus(SEED_CORPUS)[0]
    build_index(articles, tmp_path, FakeEmbedder(), progress=False)
    (tmp_path / CACHE_DIR / CACHE_NAME).write_bytes(b"not a database" * 1000)
    for suffix in ("-wal", "-shm"):
        (tmp_path / CACHE_DIR / f"{CACHE_NAME}{suffix}").unlink(missing_ok=True)
    embedder = CountingEmbedder()
    result = build_index(articles, tmp_path, embedder, progress=False)
    assert result.embedded == result.chunks
    assert _cache_rows(tmp_path) == result.chunks


def test_cached_vectors_round_trip_exactly(tmp_path: Path):
    embedder = FakeEmbedder()
    vectors = embedder.embed(["one", "two"])
    with EmbeddingCache(tmp_path / "c.sqlite", embedder) as cache:
        cache.put_many([(b"k1", vectors[0]), (b"k2", vectors[1])])
        found = cache.get_many([b"k1", b"k2", b"k3"])
    assert set(found) == {b"k1", b"k2"}
    np.testing.assert_array_equal(found[b"k1"], vectors[0])
    with EmbeddingCache(tmp_path / "c.sqlite", FakeEmbedder(dimension=32)) as other:
        assert other.get_many([b"k1"]) == {}  # another dimension is another embedder


def test_an_up_to_date_index_is_not_rebuilt_by_the_cli(tmp_path: Path, monkeypatch, capsys):
    import indexer.cli

    embedder = CountingEmbedder()
    monkeypatch.setattr(indexer.cli, "_embedder", lambda args=None: embedder)
    corpus, root = tmp_path / "corpus", tmp_path / "index"
    corpus.mkdir()
    for path in SEED_CORPUS.iterdir():
        (corpus / path.name).write_bytes(path.read_bytes())
    assert indexer.cli.main(["index", str(corpus), "--index-dir", str(root)]) == 0
    first = SearchIndex.load(root, embedder).index_id
    capsys.readouterr()

    assert indexer.cli.main(["index", str(corpus), "--index-dir", str(root)]) == 0
    assert "is up to date" in capsys.readouterr().err
    assert SearchIndex.load(root, embedder).index_id == first

    assert indexer.cli.main(["index", str(corpus), "--index-dir", str(root), "--rebuild"]) == 0
    rebuilt = SearchIndex.load(root, embedder).index_id
    assert rebuilt != first

    # Any change to the articles (here one more file) is a new build.
    (corpus / "extra.txt").write_text(" date 2024-05-01 Test\nA new article about battery recycling plants.\n")
    assert indexer.cli.main(["index", str(corpus), "--index-dir", str(root)]) == 0
    assert SearchIndex.load(root, embedder).index_id not in (first, rebuilt)


def test_an_index_analysed_by_an_older_version_is_rebuilt(tmp_path: Path, monkeypatch, capsys):
    """Its BM25 terms differ from what queries are analysed into now, so it must not be reused."""
    import json

    import indexer.cli
    from indexer.analysis import ANALYSIS_VERSION
    from indexer.publish import current_build

    embedder = CountingEmbedder()
    monkeypatch.setattr(indexer.cli, "_embedder", lambda args=None: embedder)
    root = tmp_path / "index"
    assert indexer.cli.main(["index", str(SEED_CORPUS), "--index-dir", str(root)]) == 0
    manifest_path = current_build(root) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["lexical"]["analysis"] == ANALYSIS_VERSION
    del manifest["lexical"]["analysis"]  # as written before analysis versions were recorded
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleIndex, match="analysis version 1"):  # served, it would miss folded terms
        SearchIndex.load(root, embedder)
    old = current_build(root).name
    capsys.readouterr()
    assert indexer.cli.main(["index", str(SEED_CORPUS), "--index-dir", str(root)]) == 0
    assert "is up to date" not in capsys.readouterr().err and current_build(root).name != old
