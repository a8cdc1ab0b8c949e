"""A damaged or mismatched index is refused at load, by `newsdesk serve`, and on live reload."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.cli
from api.app import create_app
from api.settings import Settings
from indexer.adapter import model_id
from indexer.build import build_index
from indexer.cli import main
from indexer.corpus import load_corpus
from indexer.embedding import MINILM_DIMENSION, FakeEmbedder
from indexer.errors import CorruptIndex, IncompatibleIndex, IndexNotFound
from indexer.publish import BUILDS_DIR, publish
from indexer.search import SearchIndex
from tests.conftest import DAIMLER, REPO, SEED_CORPUS
from tests.index_damage import DAMAGE
from tests.test_api_server import free_port


class MiniLMShapedFake(FakeEmbedder):
    """Writes manifests the default (tuned) model accepts, without loading it (the damage is what is tested)."""

    model_id = model_id("tuned")

    def __init__(self) -> None:
        super().__init__(dimension=MINILM_DIMENSION)


def _damaged(root: Path, name: str, embedder: FakeEmbedder) -> Path:
    """corpus/ indexed under `root`, then damaged in place; the damaged build directory."""
    articles, _ = load_corpus(SEED_CORPUS)
    result = build_index(articles, root, embedder, progress=False)
    DAMAGE[name][0](result.path)
    return result.path


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_load_refuses_damage_naming_the_file_and_the_fix(tmp_path: Path, name: str):
    build = _damaged(tmp_path / "index", name, FakeEmbedder())
    with pytest.raises((CorruptIndex, IncompatibleIndex)) as refused:
        from api.reload import load_checked

        load_checked(tmp_path / "index", FakeEmbedder())
    message = str(refused.value)
    assert str(build) in message and DAMAGE[name][1] in message, message
    assert "rebuild" in message.lower()


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_serve_refuses_to_start_on_a_damaged_index(tmp_path: Path, name: str, monkeypatch, capsys):
    build = _damaged(tmp_path / "index", name, FakeEmbedder())
    monkeypatch.setattr(api.cli, "_embedder", lambda threads, micro_batch: FakeEmbedder())
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started on a damaged index"))
    assert main(["serve", "--index-dir", str(tmp_path / "index")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("newsdesk: error: ") and "Traceback" not in err
    assert str(build) in err and DAMAGE[name][1] in err and "rebuild" in err.lower(), err


def test_serve_command_exits_nonzero_on_a_truncated_index(tmp_path: Path):
    """The real `newsdesk serve` process, on an index whose manifest matches the packaged model."""
    build = _damaged(tmp_path / "index", "truncated_faiss", MiniLMShapedFake())
    done = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "serve", "--index-dir", str(tmp_path / "index"),
         "--port", str(free_port())],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert f"{build}/vectors.faiss is truncated or damaged" in done.stderr and "rebuild" in done.stderr
    assert "No such file" not in done.stderr  # FAISS's stale errno is not passed on
    assert "Traceback" not in done.stderr and "serving" not in done.stdout


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_live_reload_keeps_the_old_index_when_the_new_one_is_damaged(tmp_path: Path, name: str, caplog):
    caplog.set_level(logging.ERROR, logger="uvicorn.error")
    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    settings = Settings(index_dir=root, reload_interval=0)  # reloads triggered by hand below
    with TestClient(create_app(settings, embedder=FakeEmbedder()), raise_server_exceptions=False) as client:
        manager = client.app.state.manager
        served = client.get("/readyz").json()["index_id"]

        # A damaged build published by someone else: built aside, damaged, then switched in.
        aside = tmp_path / "aside"
        bad = _damaged(aside, name, FakeEmbedder())
        shutil.move(bad, root / BUILDS_DIR / bad.name)
        publish(root, root / BUILDS_DIR / bad.name)
        assert client.portal.call(manager.refresh) is False

        ready = client.get("/readyz").json()
        assert ready["index_id"] == served
        error = ready["last_reload_error"]
        assert bad.name in error and DAMAGE[name][1] in error and "rebuild" in error.lower(), error
        hits = client.get("/search", params={"q": "Daimler Denza"}).json()["hits"]
        assert hits[0]["citation"]["article_id"] == DAIMLER
        metrics = client.get("/metrics").text
        assert 'newsdesk_index_reloads_total{result="failure"} 1.0' in metrics
        assert "newsdesk_index_reload_error 1.0" in metrics
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(logged) == 1 and f"keeping index {served}" in logged[0] and DAMAGE[name][1] in logged[0]
        assert client.portal.call(manager.refresh) is False  # not retried: the error is not logged twice
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

        # The next good publish is taken, and the error clears.
        fixed = build_index(articles[:2], root, FakeEmbedder(), progress=False)
        assert client.portal.call(manager.refresh) is True
        ready = client.get("/readyz").json()
        assert ready["index_id"] == fixed.index_id and ready["last_reload_error"] is None
        assert ready["articles"] == 2
        assert "newsdesk_index_reload_error 0.0" in client.get("/metrics").text


def test_a_damaged_index_at_startup_is_not_served(tmp_path: Path):
    root = tmp_path / "index"
    build = _damaged(root, "truncated_chunk_store", FakeEmbedder())
    with TestClient(create_app(Settings(index_dir=root, reload_interval=0), embedder=FakeEmbedder())) as client:
        response = client.get("/search", params={"q": "cars"})
        assert response.status_code == 503 and str(build) in response.json()["error"]["message"]
        assert client.get("/readyz").status_code == 503


def test_loaded_index_survives_its_files_being_damaged_later(tmp_path: Path):
    """Damage after load does not matter to an index already in memory (vectors, BM25, store handle)."""
    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build = build_index(articles, root, FakeEmbedder(), progress=False).path
    index = SearchIndex.load(root, FakeEmbedder())
    before = [h.chunk_id for h in index.search("Daimler Denza", k=3)]
    DAMAGE["truncated_faiss"][0](build)
    DAMAGE["missing_lexical_index"][0](build)
    assert [h.chunk_id for h in index.search("Daimler Denza", k=3)] == before


@pytest.mark.parametrize("content", [b"\xff\xfe", b"../../etc", b"", b"no-such-build\n"])
def test_a_damaged_current_pointer_is_refused_and_a_rebuild_replaces_it(tmp_path: Path, content: bytes, capsys):
    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    (root / "CURRENT").write_bytes(content)
    with pytest.raises(IndexNotFound, match="newsdesk index") as refused:
        SearchIndex.load(root, FakeEmbedder())
    assert str(root / "CURRENT") in str(refused.value)
    rebuilt = build_index(articles, root, FakeEmbedder(), progress=False)
    assert (root / "CURRENT").read_text().strip() == rebuilt.index_id
    assert SearchIndex.load(root, FakeEmbedder()).index_id == rebuilt.index_id


def test_live_reload_reports_a_damaged_current_pointer(tmp_path: Path):
    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    with TestClient(create_app(Settings(index_dir=root, reload_interval=0), embedder=FakeEmbedder())) as client:
        served = client.get("/readyz").json()["index_id"]
        (root / "CURRENT").write_bytes(b"\xff\xfe")
        assert client.portal.call(client.app.state.manager.refresh) is False
        ready = client.get("/readyz").json()
        assert ready["index_id"] == served and "CURRENT is damaged" in ready["last_reload_error"]


def test_a_current_that_is_a_directory_is_reported_not_crashed_on(tmp_path: Path):
    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    (root / "CURRENT").unlink()
    (root / "CURRENT").mkdir()
    with TestClient(create_app(Settings(index_dir=root, reload_interval=0), embedder=FakeEmbedder())) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "CURRENT is a directory" in ready.text
