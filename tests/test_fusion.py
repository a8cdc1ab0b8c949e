"""Hybrid fusion: additive (cosine + BM25 coverage), z-score / min-max normalisation, config validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.corpus import load_corpus
from indexer.embedding import FakeEmbedder
from indexer.lexical import LexicalIndex
from indexer.search import SearchConfig, SearchIndex, _minmax, _zscore
from tests.conftest import SEED_CORPUS

QUERY = "Xiaomi electric car license Beijing"


@pytest.fixture(scope="module")
def index_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fusion")
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False, late_interaction=False)  # re-encodes
    return root


def _all_scores(index: SearchIndex, query: str) -> tuple[np.ndarray, np.ndarray]:
    n = index.vectors.ntotal
    vectors = np.vstack([index.vectors.reconstruct(i) for i in range(n)])
    return vectors @ index.embed_query(query), index.lexical.scores(query).astype(np.float64)


def test_zscore_standardises_and_handles_a_flat_side():
    values = np.array([1.0, 2.0, 3.0, 10.0])
    z = _zscore(values)
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    assert np.argsort(z).tolist() == np.argsort(values).tolist()
    # A side that cannot tell candidates apart contributes nothing (not NaN, not a constant boost).
    assert _zscore(np.full(3, 7.0)).tolist() == [0.0, 0.0, 0.0]


def test_zscore_keeps_the_spread_that_one_outlier_squashes_in_minmax():
    values = np.array([0.0, 1.0, 2.0, 100.0])
    # min-max crushes the three ordinary candidates into 0..0.02; z-scores keep them a visible step apart
    assert np.ptp(_minmax(values)[:3]) < 0.03
    assert np.ptp(_zscore(values)[:3]) > 0.04


@pytest.mark.parametrize("fusion", ["zscore", "convex"])
@pytest.mark.parametrize("alpha", [0.25, 0.75])
def test_hybrid_scores_are_the_weighted_normalised_sides(index_root: Path, fusion: str, alpha: float):
    embedder = FakeEmbedder()
    index = SearchIndex.load(index_root, embedder, SearchConfig(fusion=fusion, alpha=alpha, depth=10_000))
    n = index.vectors.ntotal
    positions, scores = index.rank(QUERY, n, "hybrid")
    dense, lexical = _all_scores(index, QUERY)
    # depth covers every chunk, so every chunk is a candidate and both sides are normalised over all of them
    normalise = _zscore if fusion == "zscore" else _minmax
    expected = alpha * normalise(dense) + (1 - alpha) * normalise(lexical)
    assert sorted(positions.tolist()) == list(range(n))
    np.testing.assert_allclose(scores, expected[positions], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores) <= 1e-7)


def test_additive_scores_are_cosine_plus_the_share_of_the_query_matched(index_root: Path):
    embedder = FakeEmbedder()
    plain = {"fusion": "additive", "lexical_weight": 0.7, "late_depth": 0}  # late interaction tested below
    index = SearchIndex.load(index_root, embedder, SearchConfig(**plain, depth=10_000))
    n = index.vectors.ntotal
    positions, scores = index.rank(QUERY, n, "hybrid")
    dense, lexical = _all_scores(index, QUERY)
    ceiling = index.lexical.ceiling(QUERY)
    assert ceiling > 0 and lexical.max() <= ceiling  # no passage can beat full saturation of every term
    np.testing.assert_allclose(scores, (dense + 0.7 * lexical / ceiling)[positions], rtol=1e-5, atol=1e-6)
    # Scores do not depend on which other passages were candidates (nothing is normalised per query).
    shallow = SearchIndex.load(index_root, embedder, SearchConfig(**plain, depth=2))
    top_positions, top_scores = shallow.rank(QUERY, 2, "hybrid")
    np.testing.assert_allclose(top_scores, (dense + 0.7 * lexical / ceiling)[top_positions], rtol=1e-5, atol=1e-6)


def test_ceiling_is_the_saturated_score_of_the_known_terms(index_root: Path):
    index = SearchIndex.load(index_root, FakeEmbedder())
    lexical = index.lexical
    n = lexical.size
    [df] = lexical.document_frequencies(["xiaomi"])
    expected = np.log(1 + (n - df + 0.5) / (df + 0.5))
    assert lexical.ceiling("Xiaomi") == pytest.approx(expected)
    # an unknown word adds nothing to any score, so nothing to the ceiling either; no terms, no ceiling
    assert lexical.ceiling("Xiaomi zzyzxqv") == pytest.approx(expected)
    assert lexical.ceiling("the of and") == 0.0


def test_a_chunk_saturated_with_the_query_covers_nearly_all_of_it():
    texts = ["denza " * 300, "a car maker in china", "phones and cars", "electric cars sell well", "denza once"]
    lexical = LexicalIndex.build(texts)
    coverage = lexical.scores("Denza") / lexical.ceiling("Denza")
    assert 0.9 < coverage[0] <= 1.0  # the scale is right: a saturated chunk matches the whole query
    assert 0.0 < coverage[4] < coverage[0] and coverage[1:4].tolist() == [0.0, 0.0, 0.0]
    both = lexical.scores("Denza cars") / lexical.ceiling("Denza cars")
    assert both.max() < 0.9  # no chunk holds both words at saturation


def test_weight_one_is_the_dense_order_and_zero_the_lexical_order(index_root: Path):
    embedder = FakeEmbedder()
    dense_only = SearchIndex.load(index_root, embedder, SearchConfig(fusion="zscore", alpha=1.0, depth=10_000))
    positions, _ = dense_only.rank(QUERY, 5, "hybrid")
    assert positions.tolist() == dense_only.rank(QUERY, 5, "dense")[0].tolist()
    lexical_only = SearchIndex.load(index_root, embedder, SearchConfig(fusion="zscore", alpha=0.0, depth=10_000))
    positions, _ = lexical_only.rank(QUERY, 3, "hybrid")
    assert positions.tolist() == lexical_only.rank(QUERY, 3, "lexical")[0].tolist()


def test_defaults_are_the_ablation_winner():
    config = SearchConfig()
    assert (config.fusion, config.lexical_weight) == ("additive", 1.0)
    # Opt-in: re-encoding costs latency; an index built with stored token vectors turns it on at load.
    assert config.late_depth == 0 and not config.late_interaction


def test_late_interaction_rescores_the_fused_top_passages_by_maxsim(index_root: Path):
    from indexer.chunking import embedding_text
    from indexer.late_interaction import maxsim

    embedder = FakeEmbedder()
    plain = SearchIndex.load(index_root, embedder, SearchConfig(late_depth=0))
    late = SearchIndex.load(index_root, embedder, SearchConfig(late_depth=4, late_weight=0.5))
    n = plain.vectors.ntotal
    fused_pos, fused = plain.rank(QUERY, n, "hybrid")
    positions, scores = late.rank(QUERY, n, "hybrid")
    rows = plain.store.chunks(fused_pos[:4].tolist())
    tokens = embedder.embed_tokens([QUERY] + [embedding_text(r.title, r.text, late._chunker) for r in rows])
    expected = fused[:4] + 0.5 * np.maximum(maxsim(tokens[0], tokens[1:]), 0.0)
    # the head is the same four passages, re-ordered by fused score + 0.5 x MaxSim; the tail is untouched
    assert sorted(positions[:4].tolist()) == sorted(fused_pos[:4].tolist())
    by_position = dict(zip(fused_pos[:4].tolist(), expected.tolist(), strict=True))
    np.testing.assert_allclose(scores[:4], [by_position[p] for p in positions[:4].tolist()], rtol=1e-5)
    assert positions[4:].tolist() == fused_pos[4:].tolist() and np.allclose(scores[4:], fused[4:])
    assert np.all(np.diff(scores) <= 1e-7)  # still best first: a re-scored passage never falls below the tail
    # With the fake embedder's one vector per word, MaxSim is the share of query words a passage holds.
    words = QUERY.lower().split()
    for row, value in zip(rows, maxsim(tokens[0], tokens[1:]), strict=True):
        held = {w for w in embedding_text(row.title, row.text, late._chunker).lower().split()}
        assert value == pytest.approx(sum(w in held for w in words) / len(words), abs=0.2)


def test_late_interaction_leaves_other_fusions_and_modes_alone(index_root: Path):
    embedder = FakeEmbedder()
    for config in (SearchConfig(fusion="convex", late_depth=20), SearchConfig(fusion="rrf", late_depth=20),
                   SearchConfig(late_depth=20, late_weight=0.0)):
        assert not config.late_interaction
        asked = SearchIndex.load(index_root, embedder, config).rank(QUERY, 8, "hybrid")
        plain = SearchIndex.load(index_root, embedder, replace(config, late_depth=0)).rank(QUERY, 8, "hybrid")
        assert asked[0].tolist() == plain[0].tolist() and asked[1].tolist() == plain[1].tolist()
    with_late = SearchIndex.load(index_root, embedder, SearchConfig(late_depth=20))
    without = SearchIndex.load(index_root, embedder)
    for mode in ("dense", "lexical"):
        assert with_late.rank(QUERY, 5, mode)[0].tolist() == without.rank(QUERY, 5, mode)[0].tolist()


def test_late_interaction_keeps_to_the_filters(index_root: Path):
    from indexer.search import Filters

    index = SearchIndex.load(index_root, FakeEmbedder(), SearchConfig(late_depth=20))
    sources = {s for s in index.store.article_sources if s}
    assert len(sources) > 1
    for source in sources:
        hits = index.search(QUERY, k=10, filters=Filters(source=source))
        assert hits and all(h.citation.source == source for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_late_interaction_needs_an_embedder_with_token_vectors(index_root: Path, caplog: pytest.LogCaptureFixture):
    class PooledOnly:  # a third-party embedder: sentence vectors only
        def __init__(self) -> None:
            self.inner = FakeEmbedder()
            self.model_id, self.dimension = self.inner.model_id, self.inner.dimension

        def embed(self, texts):  # type: ignore[no-untyped-def]
            return self.inner.embed(texts)

    with caplog.at_level("WARNING", logger="indexer.search"):
        pooled = SearchIndex.load(index_root, PooledOnly(), SearchConfig(late_depth=20))
    assert "gives no token vectors" in caplog.text
    plain = SearchIndex.load(index_root, FakeEmbedder())
    assert pooled.rank(QUERY, 5, "hybrid")[0].tolist() == plain.rank(QUERY, 5, "hybrid")[0].tolist()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fusion": "linear"}, "Unknown fusion"),
        ({"alpha": 1.5}, "between 0 and 1"),
        ({"lexical_weight": -1.0}, "lexical_weight"),
        ({"depth": 0}, "depth"),
        ({"late_depth": -1}, "late_depth"),
        ({"late_depth": 2.5}, "late_depth"),
        ({"late_weight": 11.0}, "late_weight"),
    ],
)
def test_bad_search_config_is_refused(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**kwargs)


def test_a_call_can_override_the_fusion_and_the_answer_path_keeps_its_calibrated_one(index_root: Path):
    from indexer.answer import AnswerConfig, answer_question

    embedder = FakeEmbedder()
    index = SearchIndex.load(index_root, embedder)  # the default, additive
    old = SearchConfig(fusion="convex", alpha=0.5)
    reference = SearchIndex.load(index_root, embedder, old)
    overridden = index.search(QUERY, k=5, config=old)
    assert [(h.chunk_id, h.score) for h in overridden] == [(h.chunk_id, h.score) for h in reference.search(QUERY, k=5)]
    assert [h.score for h in index.search(QUERY, k=5)] != [h.score for h in overridden]
    assert AnswerConfig().retrieval == old
    answer = answer_question(index, QUERY, k=5)
    assert [h.chunk_id for h in answer.passages] == [h.chunk_id for h in overridden]


def test_the_service_setting_follows_the_index_unless_set_and_turns_late_interaction_on(index_root: Path):
    from api.reload import load_checked
    from api.settings import Settings

    assert Settings().late_interaction_depth is None  # the index decides
    assert not load_checked(index_root, FakeEmbedder(), None).config.late_interaction  # it stores no token vectors
    assert not load_checked(index_root, FakeEmbedder(), 0).config.late_interaction
    assert Settings(late_interaction_depth=" ").late_interaction_depth is None  # NEWSDESK_..._DEPTH= is unset
    served = load_checked(index_root, FakeEmbedder(), 3)
    # passages encoded again at search time: MaxSim is a plain mean, at the weight measured for it
    assert served.config == SearchConfig(late_depth=3, late_weight=0.75)
    direct = SearchIndex.load(index_root, FakeEmbedder(), SearchConfig(late_depth=3, late_weight=0.75))
    assert [h.score for h in served.search(QUERY, k=5)] == [h.score for h in direct.search(QUERY, k=5)]
    assert served.rank(QUERY, 5, "hybrid")[1].tolist() != SearchIndex.load(index_root, FakeEmbedder()).rank(
        QUERY, 5, "hybrid")[1].tolist()


def test_a_set_depth_keeps_the_weight_each_index_calls_for():
    from indexer.manifest import Manifest
    from indexer.search import LATE_DEPTH, default_config

    def manifest(stored: dict) -> Manifest:
        return Manifest(index_id="x", model_id="m", dimension=8, chunker={}, lexical={}, faiss_factory="Flat",
                        counts={}, corpus_fingerprint="", created_at="", late_interaction=stored)

    weighted, plain, none = manifest({"format": "sign-bits-v2"}), manifest({"format": "sign-bits-v1"}), manifest({})
    assert default_config(weighted) == SearchConfig(late_depth=LATE_DEPTH, late_weight=1.5)
    assert default_config(plain) == SearchConfig(late_depth=20, late_weight=0.75)
    assert default_config(none) == default_config(none, 0) == SearchConfig()  # off
    assert default_config(weighted, 20) == SearchConfig(late_depth=20, late_weight=1.5)
    assert default_config(plain, 40) == default_config(none, 40) == SearchConfig(late_depth=40, late_weight=0.75)
    assert not default_config(weighted, 0).late_interaction
