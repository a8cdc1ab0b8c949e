"""Choosing the embedder, recording its backend, and the ONNX export cache (no model loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer import onnx_embedder
from indexer.build import build_index
from indexer.cli import main
from indexer.corpus import Article
from indexer.embedding import FakeEmbedder, SentenceTransformerEmbedder, default_embedder
from indexer.errors import NewsdeskError
from indexer.onnx_embedder import OnnxEmbedder, ensure_model
from indexer.search import SearchIndex


def test_default_embedder_honours_kind_and_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NEWSDESK_EMBEDDER", raising=False)
    assert isinstance(default_embedder(), OnnxEmbedder)  # onnxruntime is a dependency
    assert isinstance(default_embedder("st"), SentenceTransformerEmbedder)
    monkeypatch.setenv("NEWSDESK_EMBEDDER", "st")
    assert isinstance(default_embedder(), SentenceTransformerEmbedder)
    assert isinstance(default_embedder("onnx"), OnnxEmbedder)  # an explicit kind beats the environment
    monkeypatch.setenv("NEWSDESK_EMBEDDER", "gpu")
    with pytest.raises(NewsdeskError, match="auto, onnx, st"):
        default_embedder()


def test_auto_falls_back_to_sentence_transformers_without_onnxruntime(monkeypatch: pytest.MonkeyPatch):
    import indexer.embedding

    monkeypatch.setattr(indexer.embedding, "find_spec", lambda name: None)
    assert isinstance(default_embedder("auto"), SentenceTransformerEmbedder)
    with pytest.raises(NewsdeskError, match="pip install onnxruntime"):
        default_embedder("onnx")


def test_cli_rejects_an_unknown_embedder(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "cars", "--embedder", "gpu"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_unknown_embedder_in_the_environment_is_a_clean_cli_error(tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NEWSDESK_EMBEDDER", "gpu")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("Title\n\nSome text.")
    assert main(["index", str(tmp_path / "c"), "--index-dir", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err
    assert "Unknown embedder 'gpu'" in err and "Traceback" not in err


class OtherBackend(FakeEmbedder):
    backend = "other"


def test_manifest_records_the_backend_and_any_backend_of_the_model_may_query(tmp_path: Path):
    build_index([Article("a", "Title", "Some text about cars.")], tmp_path, FakeEmbedder(), progress=False)
    index = SearchIndex.load(tmp_path, OtherBackend())
    assert index.manifest.embedder_backend == "fake"
    assert index.search("cars", k=1, mode="dense")


def test_export_is_cached_and_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = []

    def fake_export(source: Path, work: Path, model: str) -> dict[str, object]:
        calls.append(work)
        (work / onnx_embedder.MODEL_FILE).write_bytes(b"onnx")
        return {"fake": True}

    monkeypatch.setattr(onnx_embedder, "_export", fake_export)
    monkeypatch.setenv("NEWSDESK_CACHE_DIR", str(tmp_path))
    first = ensure_model()
    assert first.read_bytes() == b"onnx" and first.is_relative_to(tmp_path / "onnx")
    assert json.loads((first.parent / onnx_embedder.INFO_FILE).read_text()) == {"fake": True}
    assert ensure_model() == first and len(calls) == 1  # the second call reuses the file
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [first.parent.name]  # no temp dirs left


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken_export(source: Path, work: Path, model: str) -> dict[str, object]:
        (work / onnx_embedder.MODEL_FILE).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_embedder, "_export", broken_export)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_model(tmp_path)
    assert list((tmp_path / "onnx").iterdir()) == []


def test_an_unwritable_cache_says_how_to_fix_it(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(NewsdeskError, match="NEWSDESK_CACHE_DIR"):
        ensure_model(blocker)


def test_cache_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("NEWSDESK_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert onnx_embedder.cache_dir() == tmp_path / "newsdesk"
    monkeypatch.setenv("NEWSDESK_CACHE_DIR", str(tmp_path / "x"))
    assert onnx_embedder.cache_dir() == tmp_path / "x"
