"""An index that stores its chunks' token vectors (sign bits) for late interaction."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index, index_corpus
from indexer.chunking import embedding_text
from indexer.corpus import load_corpus
from indexer.embedding import FakeEmbedder
from indexer.errors import CorruptIndex, NewsdeskError
from indexer.late_interaction import (
    DF_NAME,
    PLAIN_SIGNS_FORMAT,
    SIGNS_NAME,
    SPOOL_NAME,
    pack_signs,
    unpack_signs,
)
from indexer.manifest import Manifest
from indexer.publish import current_build
from indexer.search import LATE_DEPTH, SearchConfig, SearchIndex
from tests.conftest import SEED_CORPUS

QUERY = "Xiaomi electric car license Beijing"


@pytest.fixture(scope="module")
def late_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("late")
    build_index(load_corpus(SEED_CORPUS)[0], root, FakeEmbedder(), progress=False, late_interaction=True)
    return root


def _chunk_texts(index: SearchIndex) -> list[str]:
    rows = index.store.chunks(list(range(index.vectors.ntotal)))
    return [embedding_text(row.title, row.text, index._chunker) for row in rows]


def test_the_index_stores_every_chunks_token_sign_bits(late_root: Path):
    embedder = FakeEmbedder()
    index = SearchIndex.load(late_root, embedder)
    tokens = embedder.embed_tokens(_chunk_texts(index))
    figures = index.manifest.late_interaction
    assert figures["format"] == "sign-bits-v2"
    assert figures["tokens"] == sum(len(t) for t in tokens) > index.vectors.ntotal
    assert figures["bytes"] == figures["tokens"] * embedder.dimension // 8
    assert not (index.path / SPOOL_NAME).exists()  # the build's spool of sign bits is gone
    stored = index.token_signs.passages(range(index.vectors.ntotal))
    for chunk, expected in zip(stored, tokens, strict=True):
        np.testing.assert_array_equal(chunk, unpack_signs(pack_signs(expected), embedder.dimension))


def test_an_index_with_token_vectors_searches_with_late_interaction_by_default(late_root: Path, index_dir: Path):
    embedder = FakeEmbedder()
    index = SearchIndex.load(late_root, embedder)
    assert index.config == SearchConfig(late_depth=LATE_DEPTH)
    build_index(load_corpus(SEED_CORPUS)[0], index_dir / "plain", embedder, progress=False, late_interaction=False)
    assert SearchIndex.load(index_dir / "plain", embedder).config == SearchConfig()  # no token vectors: off
    plain = SearchIndex.load(late_root, embedder, SearchConfig())  # an explicit config wins
    n = plain.vectors.ntotal
    fused_pos, fused = plain.rank(QUERY, n, "hybrid")
    positions, scores = index.rank(QUERY, n, "hybrid")
    head = fused_pos[:LATE_DEPTH]
    texts = _chunk_texts(plain)
    signs = [unpack_signs(pack_signs(t), embedder.dimension) for t in embedder.embed_tokens(texts)]
    # each query word counts by its idf over the index's chunks
    df = Counter(piece for ids in embedder.token_ids(texts) for piece in set(ids.tolist()))
    weights = np.array([np.log(1 + (n - df[i] + 0.5) / (df[i] + 0.5)) for i in embedder.token_ids([QUERY])[0].tolist()])
    assert weights.min() < weights.max()
    query_tokens = embedder.embed_tokens([QUERY])[0]
    best = [(signs[p] @ query_tokens.T).max(axis=0) for p in head.tolist()]  # each query word's best match
    late = np.maximum([b @ weights / weights.sum() for b in best], 0.0)
    plain_mean = np.maximum([b.mean() for b in best], 0.0)
    assert not np.allclose(late, plain_mean)
    expected = dict(zip(head.tolist(), (fused[: head.size] + index.config.late_weight * late).tolist(), strict=True))
    assert sorted(positions[: head.size].tolist()) == sorted(head.tolist())
    np.testing.assert_allclose(scores[: head.size], [expected[p] for p in positions[: head.size].tolist()], rtol=1e-5)
    assert positions[head.size :].tolist() == fused_pos[head.size :].tolist()
    assert not np.allclose(scores[: head.size], np.sort(fused[: head.size])[::-1])  # MaxSim was added
    hits = index.search(QUERY, k=5)
    assert [h.chunk_id for h in hits] == [index.store.chunks([p])[0].chunk_id for p in positions[:5].tolist()]


def test_stored_token_vectors_are_read_not_encoded(late_root: Path):
    class Counting(FakeEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.token_texts = 0

        def embed_tokens(self, texts):  # type: ignore[no-untyped-def]
            self.token_texts += len(texts)
            return super().embed_tokens(texts)

    embedder = Counting()
    index = SearchIndex.load(late_root, embedder)
    index.search(QUERY, k=5)
    index.search(QUERY, k=3)  # the query's token vectors are cached like its vector
    assert embedder.token_texts == 1


def test_the_query_vector_and_its_token_vectors_come_from_one_model_run(late_root: Path):
    class OneRun(FakeEmbedder):  # offers embed_with_tokens, as the ONNX embedder does
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def embed(self, texts):  # type: ignore[no-untyped-def]
            self.calls.append("embed")
            return super().embed(texts)

        def embed_tokens(self, texts):  # type: ignore[no-untyped-def]
            self.calls.append("embed_tokens")
            return super().embed_tokens(texts)

        def embed_with_tokens(self, texts):  # type: ignore[no-untyped-def]
            self.calls.append("embed_with_tokens")
            return FakeEmbedder.embed(self, texts), FakeEmbedder.embed_tokens(self, texts)

    embedder = OneRun()
    index = SearchIndex.load(late_root, embedder)
    hits = index.search(QUERY, k=5)
    assert embedder.calls == ["embed_with_tokens"]
    index.search(QUERY, k=5, mode="dense")  # the vector is cached
    index.search("Denza", k=5, mode="dense")  # no late interaction outside hybrid: the vector alone
    assert embedder.calls == ["embed_with_tokens", "embed"]
    reference = SearchIndex.load(late_root, FakeEmbedder()).search(QUERY, k=5)
    assert [(h.chunk_id, h.score) for h in hits] == [(h.chunk_id, h.score) for h in reference]


def test_rebuilding_reuses_cached_token_vectors_and_a_plain_index_is_not_taken_for_one(tmp_path: Path):
    embedder = FakeEmbedder()
    root = tmp_path / "idx"
    plain = index_corpus(SEED_CORPUS, root, embedder, progress=False, late_interaction=False)
    assert plain.embedded == plain.chunks
    late = index_corpus(SEED_CORPUS, root, embedder, progress=False)  # the default stores token vectors
    assert late.index_id != plain.index_id  # the plain index is not up to date with a late-interaction build
    assert late.embedded == late.chunks  # cached vectors without token bits are embedded again
    before = np.load(late.path / SIGNS_NAME)
    again = index_corpus(SEED_CORPUS, root, embedder, progress=False, late_interaction=True)
    assert again.index_id == late.index_id and again.embedded == 0
    forced = index_corpus(SEED_CORPUS, root, embedder, progress=False, late_interaction=True, rebuild=True)
    assert forced.embedded == 0 and forced.index_id != late.index_id  # all from the cache, bits included
    np.testing.assert_array_equal(np.load(forced.path / SIGNS_NAME), before)
    assert SearchIndex.load(root, embedder).search(QUERY, k=3)
    back = index_corpus(SEED_CORPUS, root, embedder, progress=False, late_interaction=False)
    assert not back.path.joinpath(SIGNS_NAME).exists() and back.embedded == 0


def test_an_embedder_without_token_vectors_cannot_build_one(tmp_path: Path):
    class PooledOnly:
        model_id, dimension = "fake/pooled", 8

        def embed(self, texts):  # type: ignore[no-untyped-def]
            return np.ones((len(texts), 8), dtype=np.float32)

    with pytest.raises(NewsdeskError, match="gives no token vectors"):
        build_index(load_corpus(SEED_CORPUS)[0], tmp_path, PooledOnly(), progress=False, late_interaction=True)


@pytest.mark.parametrize("damage", ["missing", "truncated", "empty", "other-width", "frequencies-order",
                                    "frequencies-empty", "frequencies-negative", "frequencies-over", "format"])
def test_damaged_token_vectors_are_refused_with_rebuild(tmp_path: Path, damage: str):
    import json

    root = tmp_path / "idx"
    build_index(load_corpus(SEED_CORPUS)[0], root, FakeEmbedder(), progress=False, late_interaction=True)
    build = current_build(root)
    path, frequencies = build / SIGNS_NAME, np.load(build / DF_NAME)
    chunks = Manifest.read(build).counts["chunks"]
    if damage == "frequencies-order":
        np.save(build / DF_NAME, np.array([[3, 2, 1], [1, 1, 1]]))
    elif damage == "frequencies-empty":
        (build / DF_NAME).write_bytes(b"")
    elif damage in ("frequencies-negative", "frequencies-over"):  # idf would be NaN, or negative
        frequencies[1, 0] = -1 if damage == "frequencies-negative" else chunks + 1
        np.save(build / DF_NAME, frequencies)
    elif damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "format":  # written by a later release
        manifest = json.loads((build / "manifest.json").read_text())
        manifest["late_interaction"]["format"] = "sign-bits-v9"
        (build / "manifest.json").write_text(json.dumps(manifest))
    else:
        np.save(path, np.zeros((10, 3), dtype=np.uint8))
    with pytest.raises(CorruptIndex, match="rebuild"):
        SearchIndex.load(root, FakeEmbedder())


def test_an_embedder_without_word_piece_ids_stores_the_plain_format(tmp_path: Path):
    class NoIds(FakeEmbedder):
        token_ids = None  # token vectors, but no ids to count: MaxSim can only be a plain mean

    root = tmp_path / "idx"
    first = build_index(load_corpus(SEED_CORPUS)[0], root, NoIds(), progress=False)
    assert Manifest.read(first.path).late_interaction["format"] == PLAIN_SIGNS_FORMAT
    assert not (first.path / DF_NAME).exists()
    index = SearchIndex.load(root, NoIds())
    assert index.config == SearchConfig(late_depth=20, late_weight=0.75) and index.search(QUERY, k=3)
    assert index_corpus(SEED_CORPUS, root, NoIds(), progress=False).index_id == first.index_id  # up to date


def test_a_write_through_the_api_keeps_the_token_vectors(tmp_path: Path):
    from api.rebuild import Change, apply_change
    from indexer.corpus import Article

    root = tmp_path / "idx"
    build_index(load_corpus(SEED_CORPUS)[0], root, FakeEmbedder(), progress=False, late_interaction=True)
    article = Article("new-1", "Harbour budget", "The council voted on the harbour budget.")
    apply_change(root, FakeEmbedder(), Change(upserts=[article], deletes=[]))
    index = SearchIndex.load(root, FakeEmbedder())
    assert index.manifest.late_interaction["tokens"] > 0 and index.config.late_interaction
    assert index.search("harbour budget", k=1)[0].citation.article_id == "new-1"


def test_a_write_through_the_api_counts_the_new_chunks_word_pieces(tmp_path: Path):
    from api.rebuild import Change, apply_change
    from indexer.corpus import Article

    root = tmp_path / "idx"
    embedder = FakeEmbedder()
    build_index(load_corpus(SEED_CORPUS)[0], root, embedder, progress=False, late_interaction=True)
    harbour = embedder.token_ids(["harbour"])[0]
    before = SearchIndex.load(root, embedder).token_signs
    assert before.weights(harbour)[0] == pytest.approx(np.log(1 + (before.chunks + 0.5) / 0.5))  # no chunk holds it
    article = Article("new-1", "Harbour budget", "The council voted on the harbour budget.")
    apply_change(root, embedder, Change(upserts=[article], deletes=[]))
    after = SearchIndex.load(root, embedder).token_signs
    assert after.chunks == before.chunks + 1
    assert after.weights(harbour)[0] == pytest.approx(np.log(1 + (after.chunks - 0.5) / 1.5))  # one chunk holds it


def test_an_index_stored_before_word_piece_frequencies_searches_with_plain_maxsim_and_is_rebuilt(tmp_path: Path):
    import json

    embedder = FakeEmbedder()
    root = tmp_path / "idx"
    first = index_corpus(SEED_CORPUS, root, embedder, progress=False, late_interaction=True)
    manifest = json.loads((first.path / "manifest.json").read_text())
    manifest["late_interaction"]["format"] = "sign-bits-v1"  # as a build of the last release wrote it
    (first.path / "manifest.json").write_text(json.dumps(manifest))
    (first.path / DF_NAME).unlink()
    old = SearchIndex.load(root, embedder)
    assert old.token_signs.weights(embedder.token_ids([QUERY])[0]) is None
    # the plain mean at the settings it was measured with, not those tuned for the weighted one
    assert old.config == SearchConfig(late_depth=20, late_weight=0.75)
    assert old.search(QUERY, k=3)
    again = index_corpus(SEED_CORPUS, root, embedder, progress=False)  # what `newsdesk index` does
    assert again.index_id != first.index_id and again.embedded == 0  # rebuilt, every vector from the cache
    assert SearchIndex.load(root, embedder).token_signs.frequencies is not None


def test_the_first_write_through_the_api_stores_token_vectors_as_newsdesk_index_would(tmp_path: Path):
    from api.rebuild import Change, apply_change
    from indexer.corpus import Article

    root = tmp_path / "idx"
    article = Article("new-1", "Harbour budget", "The council voted on the harbour budget.")
    apply_change(root, FakeEmbedder(), Change(upserts=[article], deletes=[]))
    index = SearchIndex.load(root, FakeEmbedder())
    assert index.manifest.late_interaction["format"] == "sign-bits-v2" and index.config.late_interaction
