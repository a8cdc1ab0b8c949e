"""The Ray engine builds the same index as the local engine (local Ray, 2 CPUs)."""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer import distributed, ivf, vector_index
from indexer.build import BuildResult, build_index
from indexer.cli import main
from indexer.corpus import Article, load_corpus
from indexer.distributed import (
    RayOptions,
    _check_complete,
    embed_actor_count,
    ray_build_index,
    ray_index_corpus,
    ray_session,
    require_ray,
)
from indexer.embedding import FakeEmbedder
from indexer.errors import NewsdeskError
from indexer.late_interaction import DF_NAME, SIGN_OFFSETS_NAME, SIGNS_NAME, SPOOL_NAME
from indexer.manifest import IVF_DATA_NAME, LEXICAL_DIR, STORE_NAME, VECTORS_NAME, Manifest
from indexer.publish import current_build
from indexer.search import SearchIndex
from tests.conftest import SEED_CORPUS

QUERIES = [
    "Xiaomi electric car license",
    "Daimler BYD joint venture Denza",
    "比亞迪",
    "Beijing automotive production plant",
    "battery range and price of the new model",
    "Lei Jun investment",
    "sales in China last year",
    "who owns the factory",
]
# Small batches on purpose: many blocks and both actors busy, so batches come back
# out of order and the driver's reordering is exercised.
OPTIONS = RayOptions(num_cpus=2, embed_actors=2, cpus_per_actor=0.5, chunk_cpus=0.5,
                     chunk_batch_size=3, embed_batch_size=16)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray instance (2 CPUs, no dashboard) for the module, started by the engine's own code."""
    with ray_session(RayOptions(num_cpus=2)):
        yield


def synthetic_articles(count: int = 40) -> list[Article]:
    """Distinct articles made from the seed corpus's paragraphs, plus one long one (many chunks)."""
    seeds, _ = load_corpus(SEED_CORPUS)
    paragraphs = [p for a in seeds for p in a.text.split("\n") if p.strip()]
    rng = np.random.default_rng(7)
    articles = list(seeds)
    for i in range(count):
        picked = rng.choice(len(paragraphs), size=int(rng.integers(1, 6)), replace=False)
        text = f"Report {i}.\n" + "\n".join(paragraphs[j] for j in picked)
        day = f"2020-01-{i % 28 + 1:02d}"
        articles.append(Article(f"synthetic/{i:03d}", f"Report {i}", text, f"Source {i % 3}", day))
    articles.append(Article("long", "A long article", "\n".join(paragraphs * 3), "Archive", "2021-06-01"))
    return articles


def rows(build: Path, table: str) -> list[tuple]:
    with sqlite3.connect(build / STORE_NAME) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY pos").fetchall()


def test_ray_and_local_engines_build_the_same_index(tmp_path: Path, ray_cluster: None):
    articles = synthetic_articles()
    embedder = FakeEmbedder()
    local = build_index(articles, tmp_path / "local", embedder, progress=False)
    ray = ray_build_index(articles, tmp_path / "ray", FakeEmbedder, OPTIONS)
    assert ray.chunks == local.chunks > 100

    # Chunk ids, offsets and texts, row for row (row i is vector i); articles likewise.
    assert rows(ray.path, "chunks") == rows(local.path, "chunks")
    assert rows(ray.path, "articles") == rows(local.path, "articles")

    local_vectors = faiss.read_index(str(local.path / VECTORS_NAME))
    ray_vectors = faiss.read_index(str(ray.path / VECTORS_NAME))
    np.testing.assert_allclose(
        ray_vectors.reconstruct_n(0, ray_vectors.ntotal), local_vectors.reconstruct_n(0, local_vectors.ntotal),
        rtol=0, atol=1e-6,
    )
    for name in sorted(p.name for p in (local.path / LEXICAL_DIR).iterdir()):
        assert (ray.path / LEXICAL_DIR / name).read_bytes() == (local.path / LEXICAL_DIR / name).read_bytes(), name
    # token vectors (late interaction) and their word pieces' frequencies, chunk for chunk
    for name in (SIGNS_NAME, SIGN_OFFSETS_NAME, DF_NAME):
        assert (ray.path / name).read_bytes() == (local.path / name).read_bytes(), name
    assert not (ray.path / SPOOL_NAME).exists()  # the driver's spool of sign bits is gone

    local_manifest, ray_manifest = asdict(Manifest.read(local.path)), asdict(Manifest.read(ray.path))
    assert ray_manifest.pop("extra")["engine"] == "ray"
    for volatile in ("index_id", "created_at", "extra"):
        local_manifest.pop(volatile), ray_manifest.pop(volatile, None)
    assert ray_manifest == local_manifest

    local_index = SearchIndex.load(tmp_path / "local", embedder)
    ray_index = SearchIndex.load(tmp_path / "ray", embedder)
    for mode in ("dense", "lexical", "hybrid"):
        for query in QUERIES:
            expected = local_index.search(query, k=10, mode=mode)
            got = ray_index.search(query, k=10, mode=mode)
            assert [h.chunk_id for h in got] == [h.chunk_id for h in expected], (mode, query)
            assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-5)


@pytest.fixture
def shuffled_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a cluster, rows arrive in completion order; simulate any order: all rows shuffled, in pieces."""
    import ray.data

    in_order = ray.data.Dataset.iter_batches

    def shuffled(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        batches = list(in_order(self, *args, **kwargs))
        columns = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
        order = np.random.default_rng(3).permutation(len(columns["pos"]))
        assert not np.array_equal(order, np.arange(len(order)))
        for piece in np.array_split(order, 5):
            yield {name: values[piece] for name, values in columns.items()}

    monkeypatch.setattr(ray.data.Dataset, "iter_batches", shuffled)


@pytest.mark.usefixtures("ray_cluster", "shuffled_batches")
def test_batches_returned_out_of_order_are_put_back_in_article_order(tmp_path: Path):
    articles = synthetic_articles(12)
    local = build_index(articles, tmp_path / "local", FakeEmbedder(), progress=False)
    ray = ray_build_index(articles, tmp_path / "ray", FakeEmbedder, OPTIONS)
    assert rows(ray.path, "chunks") == rows(local.path, "chunks")
    local_vectors = faiss.read_index(str(local.path / VECTORS_NAME))
    ray_vectors = faiss.read_index(str(ray.path / VECTORS_NAME))
    np.testing.assert_array_equal(
        ray_vectors.reconstruct_n(0, ray.chunks), local_vectors.reconstruct_n(0, local.chunks)
    )
    for name in (SIGNS_NAME, SIGN_OFFSETS_NAME):  # the token vectors are put back in order too
        assert (ray.path / name).read_bytes() == (local.path / name).read_bytes(), name


def test_a_failed_ray_build_leaves_no_spool_of_sign_bits(tmp_path: Path, ray_cluster: None,
                                                         monkeypatch: pytest.MonkeyPatch):
    spooled = []

    def lost(pos, ordinal):  # type: ignore[no-untyped-def]
        spooled.extend((tmp_path / "ray").rglob(SPOOL_NAME))  # every batch is in, the spool with it
        raise NewsdeskError("chunks were lost")

    monkeypatch.setattr(distributed, "_check_complete", lost)
    with pytest.raises(NewsdeskError, match="lost"):
        ray_build_index(synthetic_articles(4), tmp_path / "ray", FakeEmbedder, OPTIONS)
    assert spooled and not any(path.exists() for path in spooled)


def test_the_ray_engine_can_leave_token_vectors_out(tmp_path: Path, ray_cluster: None):
    articles = synthetic_articles(6)
    local = build_index(articles, tmp_path / "local", FakeEmbedder(), progress=False, late_interaction=False)
    ray = ray_build_index(articles, tmp_path / "ray", FakeEmbedder, OPTIONS, late_interaction=False)
    assert not Manifest.read(ray.path).late_interaction and not (ray.path / SIGNS_NAME).exists()
    assert sorted(p.name for p in ray.path.iterdir()) == sorted(p.name for p in local.path.iterdir())


@pytest.mark.usefixtures("ray_cluster", "shuffled_batches")
def test_a_large_ray_build_streams_its_vectors_into_sharded_ivf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Past IVF_MIN_CHUNKS the driver keeps vectors in files and the writer adds them shard by shard."""
    monkeypatch.setattr(vector_index, "IVF_MIN_CHUNKS", 3)
    monkeypatch.setattr(ivf, "SHARD_CHUNKS", 10)
    monkeypatch.setattr(distributed, "REORDER_BLOCK", 7)
    articles = synthetic_articles(12)
    local = build_index(articles, tmp_path / "local", FakeEmbedder(), progress=False)
    ray = ray_build_index(articles, tmp_path / "ray", FakeEmbedder, OPTIONS)
    local_manifest, ray_manifest = Manifest.read(local.path), Manifest.read(ray.path)
    assert ray_manifest.vector_index == local_manifest.vector_index
    assert ray_manifest.faiss_factory.startswith("IVF") and ray_manifest.vector_index["shards"] > 1
    assert sorted(p.name for p in ray.path.iterdir()) == sorted(p.name for p in local.path.iterdir())
    assert (ray.path / IVF_DATA_NAME).read_bytes() == (local.path / IVF_DATA_NAME).read_bytes()
    local_index, ray_index = SearchIndex.load(tmp_path / "local", FakeEmbedder()), SearchIndex.load(
        tmp_path / "ray", FakeEmbedder())
    for query in QUERIES:
        assert [h.chunk_id for h in ray_index.search(query, k=10, mode="dense")] == [
            h.chunk_id for h in local_index.search(query, k=10, mode="dense")], query


def test_an_up_to_date_index_is_not_rebuilt_on_ray(tmp_path: Path, ray_cluster: None):
    root = tmp_path / "index"
    first = ray_index_corpus(SEED_CORPUS, root, FakeEmbedder, OPTIONS)
    assert first.embedded == first.chunks > 0 and first.reused == 0
    again = ray_index_corpus(SEED_CORPUS, root, FakeEmbedder, OPTIONS)
    assert again.index_id == first.index_id and again.path == first.path
    assert again.chunks == first.chunks and again.reused == first.chunks and again.embedded == 0
    assert Manifest.read(current_build(root)).index_id == first.index_id

    forced = ray_index_corpus(SEED_CORPUS, root, FakeEmbedder, OPTIONS, rebuild=True)
    assert forced.index_id != first.index_id
    assert Manifest.read(current_build(root)).index_id == forced.index_id
    assert Manifest.read(current_build(root)).extra["engine"] == "ray"


@pytest.mark.integration
@pytest.mark.slow
def test_cli_ray_engine_with_the_real_model(tmp_path: Path, ray_cluster: None, real_index: SearchIndex, capsys):
    """`newsdesk index --engine ray` with MiniLM: other batch shapes, so floats may differ in the last bits."""
    root = tmp_path / "index"
    code = main(["index", str(SEED_CORPUS), "--index-dir", str(root), "--engine", "ray",
                 "--ray-actors", "2", "--ray-cpus-per-actor", "0.5", "--ray-batch-size", "5"])
    assert code == 0, capsys.readouterr().err
    ray_index = SearchIndex.load(root, real_index.embedder)
    assert ray_index.manifest.late_interaction and ray_index.config.late_interaction  # token vectors stored
    assert ray_index.manifest.extra["engine"] == "ray"
    assert rows(ray_index.path, "chunks") == rows(real_index.path, "chunks")
    expected = faiss.read_index(str(real_index.path / VECTORS_NAME))
    got = faiss.read_index(str(ray_index.path / VECTORS_NAME))
    np.testing.assert_allclose(got.reconstruct_n(0, got.ntotal), expected.reconstruct_n(0, expected.ntotal),
                               rtol=0, atol=1e-4)
    for query in QUERIES:
        assert [h.chunk_id for h in ray_index.search(query, k=10, mode="hybrid")] == [
            h.chunk_id for h in real_index.search(query, k=10, mode="hybrid")
        ], query


def test_without_ray_the_cli_says_how_to_install_it(tmp_path: Path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "ray" else real_find_spec(name, *a))
    with pytest.raises(NewsdeskError, match=r"pip install 'newsdesk\[distributed\]'"):
        require_ray()
    code = main(["index", str(SEED_CORPUS), "--index-dir", str(tmp_path / "index"), "--engine", "ray"])
    assert code == 2
    assert "pip install 'newsdesk[distributed]'" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()


def test_ray_options_need_the_ray_engine(tmp_path: Path, capsys):
    code = main(["index", str(SEED_CORPUS), "--index-dir", str(tmp_path / "index"), "--ray-actors", "2"])
    assert code == 2 and "--engine ray" in capsys.readouterr().err


def test_an_actor_pool_that_starves_chunking_is_refused():
    assert embed_actor_count(RayOptions(), cluster_cpus=16) == 15  # 1 CPU each, beside a 0.25-CPU chunking task
    assert embed_actor_count(RayOptions(), cluster_cpus=2) == 1
    assert embed_actor_count(RayOptions(embed_actors=2, cpus_per_actor=0.5), cluster_cpus=2) == 2
    with pytest.raises(NewsdeskError, match="--ray-actors 1"):
        embed_actor_count(RayOptions(embed_actors=2), cluster_cpus=2)


def test_lost_or_repeated_chunks_are_detected():
    _check_complete(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 0, 0, 1, 2]))
    with pytest.raises(NewsdeskError):
        _check_complete(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 0, 0, 2]))  # article 2 lost ordinal 1
    with pytest.raises(NewsdeskError):
        _check_complete(np.array([0, 0, 0]), np.array([0, 1, 1]))  # ordinal 1 twice


@pytest.mark.parametrize("flags, rebuild, late", [([], False, None), (["--rebuild"], True, None),
                                                 (["--no-late-interaction"], False, False)])
def test_cli_passes_rebuild_to_the_ray_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                               flags: list[str], rebuild: bool, late: bool | None):
    """The wiring only (the real Ray build is covered above): `--rebuild` and
    `--no-late-interaction` reach ray_index_corpus."""
    calls = []

    def fake_ray_index_corpus(corpus, root, factory, options, say, rebuild, late_interaction):  # type: ignore[no-untyped-def]
        calls.append((rebuild, late_interaction))
        return BuildResult("id", root, articles=3, chunks=12, seconds=0.1)

    monkeypatch.setattr(distributed, "require_ray", lambda: None)
    monkeypatch.setattr(distributed, "ray_index_corpus", fake_ray_index_corpus)
    code = main(["index", str(SEED_CORPUS), "--index-dir", str(tmp_path / "index"), "--engine", "ray", *flags])
    assert code == 0, capsys.readouterr().err
    assert calls == [(rebuild, late)]
