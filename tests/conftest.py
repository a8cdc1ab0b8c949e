"""Shared fixtures: a fake embedder for unit tests, the real model once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indexer.build import build_index
from indexer.corpus import load_corpus
from indexer.embedding import FakeEmbedder, SentenceTransformerEmbedder
from indexer.search import SearchIndex

REPO = Path(__file__).resolve().parent.parent
SEED_CORPUS = REPO / "corpus"
DAIMLER = "000_27e84a60694065d5"
XIAOMI_BLOOMBERG = "001_0fb95c30cc797451"
XIAOMI_HT = "002_4d681456785291cb"


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def seed_corpus(tmp_path: Path) -> Path:
    """A private copy of corpus/ that a test may modify."""
    target = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, target)
    return target


@pytest.fixture
def fake_index(tmp_path: Path, fake_embedder: FakeEmbedder) -> SearchIndex:
    """corpus/ indexed with the fake embedder in this test's own directory."""
    articles, _ = load_corpus(SEED_CORPUS)
    root = tmp_path / "index"
    build_index(articles, root, fake_embedder, progress=False)
    return SearchIndex.load(root, fake_embedder)


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder()
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def real_index(tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder) -> SearchIndex:
    """corpus/ indexed once per session with the real model (read-only for tests)."""
    articles, _ = load_corpus(SEED_CORPUS)
    root = tmp_path_factory.mktemp("real") / "index"
    build_index(articles, root, real_embedder, progress=False)
    return SearchIndex.load(root, real_embedder)
