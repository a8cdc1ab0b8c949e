import json
from datetime import date
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer.build import build_index
from indexer.corpus import Article, load_corpus
from indexer.embedding import FakeEmbedder
from indexer.errors import CorruptIndex, IncompatibleIndex, IndexNotFound, InvalidQuery
from indexer.manifest import MANIFEST_NAME, STORE_NAME, VECTORS_NAME, Manifest
from indexer.publish import BUILDS_DIR, current_build
from indexer.search import Filters, SearchConfig, SearchIndex, validate_question
from tests.conftest import DAIMLER, SEED_CORPUS, XIAOMI_HT


def test_citations_slice_the_article_text(fake_index: SearchIndex):
    for mode in ("hybrid", "dense", "lexical"):
        hits = fake_index.search("Xiaomi Beijing Automotive license", k=5, mode=mode)
        assert hits, mode
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
        for hit in hits:
            article = fake_index.article(hit.citation.article_id)
            assert article is not None
            assert article.text[hit.citation.start : hit.citation.end] == hit.text
            for start, end in hit.highlights:
                assert hit.citation.start <= start < end <= hit.citation.end


def test_lexical_finds_cjk_names(fake_index: SearchIndex):
    [hit] = fake_index.search("比亞迪", k=1, mode="lexical")
    assert hit.citation.article_id == DAIMLER and "比亞迪" in hit.text
    start, end = hit.highlights[0]
    assert fake_index.article(DAIMLER).text[start:end] == "比亞迪"


def test_lexical_ranks_the_denza_passage_first(fake_index: SearchIndex):
    hit = fake_index.search("Denza nameplate", k=1, mode="lexical")[0]
    assert "Denza" in hit.text and hit.chunk_id.startswith(DAIMLER)


def test_filters_by_source_and_date(fake_index: SearchIndex):
    hits = fake_index.search("Xiaomi electric cars", k=20, filters=Filters(source="ht auto"))
    assert hits and {h.citation.article_id for h in hits} == {XIAOMI_HT}
    hits = fake_index.search("cars", k=20, filters=Filters(date_from=date(2019, 1, 1)))
    assert hits and all(h.citation.date >= "2019-01-01" for h in hits)
    hits = fake_index.search("cars", k=20, filters=Filters(date_to=date(2019, 1, 1)))
    assert hits and {h.citation.article_id for h in hits} == {DAIMLER}
    assert fake_index.search("cars", k=5, filters=Filters(source="Nobody")) == []


def test_bad_queries_raise_invalid_query(fake_index: SearchIndex):
    with pytest.raises(InvalidQuery) as err:
        fake_index.search("   ")
    assert err.value.field == "q"
    with pytest.raises(InvalidQuery):
        fake_index.search("cars", mode="fuzzy")
    with pytest.raises(InvalidQuery):
        fake_index.search("cars", k=0)
    with pytest.raises(InvalidQuery):
        Filters(date_from=date(2022, 1, 2), date_to=date(2022, 1, 1))


@pytest.mark.parametrize("query", ["ca\x00rs", "cars\x1b[0m", "cars\x9b", "\ud800 cars"])
def test_queries_that_are_not_text_raise_invalid_query(fake_index: SearchIndex, query: str):
    with pytest.raises(InvalidQuery, match="U\\+") as err:
        fake_index.search(query)
    assert err.value.field == "q"
    assert validate_question("  Who?\t") == "Who?"
    with pytest.raises(InvalidQuery, match="question is empty"):
        validate_question(" \n")
    for source in (" ", "Bloom\x00berg"):
        with pytest.raises(InvalidQuery) as err:
            Filters(source=source)
        assert err.value.field == "source"
    assert fake_index.search("Daimler\tDenza\nBYD", k=1)  # tabs and line breaks are text


@pytest.mark.parametrize("query", ["\u200b", "\ufeff", "\u0301", "\uffff", " \u200b\u2060 "])
def test_queries_with_nothing_to_search_for_raise_invalid_query(fake_index: SearchIndex, query: str):
    """Invisible or combining characters alone would "match" whatever ranks first."""
    with pytest.raises(InvalidQuery, match="no letters, digits or symbols") as err:
        fake_index.search(query)
    assert err.value.field == "q"
    with pytest.raises(InvalidQuery, match="no letters, digits or symbols"):
        validate_question(query)
    assert fake_index.search("caf\u0065\u0301 ?", k=1) and fake_index.search("€", k=1)  # marks beside letters, symbols


def test_rrf_and_convex_fusion_return_the_union(tmp_path: Path, fake_embedder: FakeEmbedder):
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, tmp_path, fake_embedder, progress=False)
    for fusion in ("rrf", "convex"):
        index = SearchIndex.load(tmp_path, fake_embedder, SearchConfig(fusion=fusion))
        hits = index.search("Daimler Denza BYD", k=3)
        assert hits[0].citation.article_id == DAIMLER


def test_dense_search_matches_brute_force(fake_index: SearchIndex, fake_embedder: FakeEmbedder):
    query = "smartphone maker wants a car license"
    positions, scores = fake_index.rank(query, 5, "dense")
    n = fake_index.vectors.ntotal
    matrix = np.vstack([fake_index.vectors.reconstruct(i) for i in range(n)])
    brute = matrix @ fake_embedder.embed([query])[0]
    np.testing.assert_allclose(scores, np.sort(brute)[::-1][:5], rtol=1e-5)


def test_manifest_records_the_build(fake_index: SearchIndex):
    m = fake_index.manifest
    assert m.model_id == "fake/bag-of-words" and m.dimension == 64
    assert m.counts["articles"] == 3 and m.counts["chunks"] == fake_index.store.chunk_count
    assert m.chunker["encoding"] == "cl100k_base" and m.faiss_factory == "Flat"
    assert len(m.corpus_fingerprint) == 64


def test_missing_index_says_how_to_build(tmp_path: Path, fake_embedder: FakeEmbedder):
    with pytest.raises(IndexNotFound, match="newsdesk index"):
        SearchIndex.load(tmp_path / "none", fake_embedder)


def test_index_from_another_model_is_refused(tmp_path: Path):
    build_index([Article("a", "T", "text")], tmp_path, FakeEmbedder(dimension=32), progress=False)
    with pytest.raises(IncompatibleIndex, match="Rebuild"):
        SearchIndex.load(tmp_path, FakeEmbedder(dimension=64))


def test_index_from_another_format_is_refused(tmp_path: Path, fake_embedder: FakeEmbedder):
    build_index([Article("a", "T", "text")], tmp_path, fake_embedder, progress=False)
    build = current_build(tmp_path)
    manifest = Manifest.read(build)
    manifest.format_version = 999
    manifest.write(build)
    with pytest.raises(IncompatibleIndex, match="format version 999"):
        SearchIndex.load(tmp_path, fake_embedder)


def test_an_index_of_format_version_1_still_loads(tmp_path: Path, fake_embedder: FakeEmbedder):
    build_index([Article("a", "T", "text")], tmp_path, fake_embedder, progress=False)
    path = current_build(tmp_path) / MANIFEST_NAME
    data = json.loads(path.read_text())
    del data["vector_index"]  # what version 1 wrote: no figures, and never an IVF index
    path.write_text(json.dumps(data | {"format_version": 1}))
    index = SearchIndex.load(tmp_path, fake_embedder)
    assert index.manifest.vector_index == {} and index.search("text", mode="dense")


@pytest.mark.parametrize("damage", ["truncate_vectors", "delete_store", "garble_store", "count_mismatch"])
def test_damaged_index_is_detected(tmp_path: Path, fake_embedder: FakeEmbedder, damage: str):
    build_index(load_corpus(SEED_CORPUS)[0], tmp_path, fake_embedder, progress=False)
    build = current_build(tmp_path)
    if damage == "truncate_vectors":
        data = (build / VECTORS_NAME).read_bytes()
        (build / VECTORS_NAME).write_bytes(data[: len(data) // 2])
    elif damage == "delete_store":
        (build / STORE_NAME).unlink()
    elif damage == "garble_store":
        (build / STORE_NAME).write_bytes(b"not a database" * 100)
    else:
        index = faiss.read_index(str(build / VECTORS_NAME))
        index.add(np.zeros((1, index.d), dtype=np.float32))
        faiss.write_index(index, str(build / VECTORS_NAME))
    with pytest.raises(CorruptIndex) as err:
        SearchIndex.load(tmp_path, fake_embedder)
    assert str(build) in str(err.value) and "ebuild" in str(err.value)


class ExplodingEmbedder(FakeEmbedder):
    def embed(self, texts):
        raise RuntimeError("power cut")


def test_failed_build_never_replaces_the_published_index(tmp_path: Path, fake_embedder: FakeEmbedder):
    articles = load_corpus(SEED_CORPUS)[0]
    build_index(articles, tmp_path, fake_embedder, progress=False)
    before = SearchIndex.load(tmp_path, fake_embedder)
    expected = [h.chunk_id for h in before.search("Xiaomi license", k=5)]
    with pytest.raises(RuntimeError):
        build_index([Article("new", "New", "Totally new article")], tmp_path, ExplodingEmbedder(), progress=False)
    after = SearchIndex.load(tmp_path, fake_embedder)
    assert after.index_id == before.index_id
    assert [h.chunk_id for h in after.search("Xiaomi license", k=5)] == expected
    # The next build cleans the leftover and publishes.
    build_index(articles[:1], tmp_path, fake_embedder, progress=False)
    builds = {p.name for p in (tmp_path / BUILDS_DIR).iterdir()}
    assert current_build(tmp_path).name in builds and before.index_id in builds and len(builds) == 2


def test_empty_article_list_is_refused(tmp_path: Path, fake_embedder: FakeEmbedder):
    from indexer.errors import CorpusError

    with pytest.raises(CorpusError):
        build_index([], tmp_path, fake_embedder)
