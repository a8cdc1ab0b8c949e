"""Shared fixtures: a fake embedder for unit tests, the real model once per session."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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


class HeldEmbedder(FakeEmbedder):
    """The fake embedder, holding any call with a text containing `word` until released (a slow model call).

    `entered` is set when such a call starts; it waits at most `timeout` s, so a bug that
    never releases it fails a test instead of hanging it.
    """

    def __init__(self, word: str = "block", timeout: float = 20) -> None:
        super().__init__()
        self.word, self.timeout = word, timeout
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if any(self.word in t for t in texts):
            self.entered.set()
            self.release.wait(timeout=self.timeout)
        return super().embed(texts)


@pytest.fixture(autouse=True)
def _default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from the default (tuned) model, whatever the developer's shell sets."""
    monkeypatch.delenv("NEWSDESK_MODEL", raising=False)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    """A published index of corpus/ built with the fake embedder."""
    root = tmp_path / "index"
    build_index(load_corpus(SEED_CORPUS)[0], root, FakeEmbedder(), progress=False)
    return root


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
    embedder = SentenceTransformerEmbedder(model="tuned")
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def real_index(tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder) -> SearchIndex:
    """corpus/ indexed once per session with the real model (read-only for tests)."""
    articles, _ = load_corpus(SEED_CORPUS)
    root = tmp_path_factory.mktemp("real") / "index"
    build_index(articles, root, real_embedder, progress=False)
    return SearchIndex.load(root, real_embedder)
