"""Re-indexing reuses the published build's chunking for unchanged articles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from indexer.build import build_index, chunk_articles
from indexer.chunking import Chunker, ChunkerConfig
from indexer.corpus import Article, load_corpus
from indexer.embedding import FakeEmbedder
from indexer.incremental import published_spans
from indexer.manifest import STORE_NAME
from indexer.publish import current_build
from tests.conftest import DAIMLER, SEED_CORPUS


@pytest.fixture
def chunked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the articles the chunker actually runs on."""
    seen: list[str] = []
    original = Chunker.chunk

    def counting(self, article):
        seen.append(article.article_id)
        return original(self, article)

    monkeypatch.setattr(Chunker, "chunk", counting)
    return seen


def test_unchanged_articles_are_not_chunked_again(tmp_path: Path, chunked: list[str]):
    articles = load_corpus(SEED_CORPUS)[0]
    build_index(articles, tmp_path, FakeEmbedder(), progress=False)
    assert len(chunked) == len(articles)
    chunked.clear()
    edited = [replace(a, text=a.text + "\n\nA late correction.") if a.article_id == DAIMLER else a for a in articles]
    build_index(edited, tmp_path, FakeEmbedder(), progress=False)
    assert chunked == [DAIMLER]


def test_reused_chunks_equal_fresh_ones(tmp_path: Path):
    articles = load_corpus(SEED_CORPUS)[0]
    config = ChunkerConfig()
    build_index(articles, tmp_path, FakeEmbedder(), progress=False)
    reuse = published_spans(tmp_path, config)
    assert len(reuse) == len(articles)
    assert chunk_articles(articles, config, False, reuse=reuse) == chunk_articles(articles, config, False)


def test_other_chunker_settings_chunk_afresh(tmp_path: Path, chunked: list[str]):
    articles = load_corpus(SEED_CORPUS)[0]
    build_index(articles, tmp_path, FakeEmbedder(), progress=False)
    assert published_spans(tmp_path, ChunkerConfig(max_tokens=100)) == {}
    chunked.clear()
    build_index(articles, tmp_path, FakeEmbedder(), ChunkerConfig(max_tokens=100), progress=False)
    assert len(chunked) == len(articles)


def test_an_unreadable_published_store_means_chunking_afresh(tmp_path: Path):
    assert published_spans(tmp_path, ChunkerConfig()) == {}  # nothing published yet
    build_index(load_corpus(SEED_CORPUS)[0], tmp_path, FakeEmbedder(), progress=False)
    (current_build(tmp_path) / STORE_NAME).write_bytes(b"garbage" * 100)
    assert published_spans(tmp_path, ChunkerConfig()) == {}
    build_index(load_corpus(SEED_CORPUS)[0], tmp_path, FakeEmbedder(), progress=False)  # and the build still works


def test_articles_with_the_same_text_keep_their_chunk_count(tmp_path: Path):
    """Two ids, one title and text (the API accepts that): their spans must not pile up build after build."""
    text = "The same report about electric cars. " * 60
    articles = [Article("a", "Same title", text), Article("b", "Same title", text)]
    counts = [build_index(articles, tmp_path, FakeEmbedder(), progress=False).chunks for _ in range(3)]
    assert counts[0] > 2 and counts == [counts[0]] * 3
