"""The real all-MiniLM-L6-v2 model on corpus/ (loaded once per session)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.search import SearchIndex
from tests.conftest import DAIMLER, REPO, XIAOMI_BLOOMBERG, XIAOMI_HT

pytestmark = pytest.mark.integration


def test_model_vectors_are_normalised(real_embedder):
    vectors = real_embedder.embed(["Xiaomi electric car", "比亞迪"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_tuned_model_moves_vectors_but_keeps_their_meaning(real_embedder):
    from indexer.embedding import SentenceTransformerEmbedder

    assert real_embedder.model == "tuned"
    texts = ["Who is Xiaomi negotiating with to build cars?",
             "Xiaomi is in talks with Beijing Automotive about building electric cars in China."]
    tuned, base = real_embedder.embed(texts), SentenceTransformerEmbedder(model="base").embed(texts)
    same_text = (tuned * base).sum(axis=1)
    assert same_text.max() < 0.999 and same_text.min() > 0.8, same_text  # adapted, not replaced
    assert tuned[0] @ tuned[1] > 0.5 and base[0] @ base[1] > 0.5  # both models pair question and answer


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_daimler_denza_question(real_index: SearchIndex, mode: str):
    hits = real_index.search("Which company did Daimler team up with for Denza?", k=3, mode=mode)
    top = hits[0]
    assert top.citation.article_id == DAIMLER
    assert "BYD" in top.text and "Denza" in top.text
    article = real_index.article(DAIMLER)
    assert article.text[top.citation.start : top.citation.end] == top.text
    assert top.citation.source == "Bloomberg" and top.citation.date == "2018-08-07"


def test_paraphrase_finds_xiaomi_partner_talks(real_index: SearchIndex):
    hits = real_index.search("Who is Xiaomi negotiating with to build cars?", k=3)
    assert {h.citation.article_id for h in hits} & {XIAOMI_BLOOMBERG, XIAOMI_HT}
    assert any("Brilliance" in h.text or "Beijing Automotive" in h.text for h in hits)


def test_cli_index_and_search(tmp_path: Path):
    index_dir = tmp_path / "idx"
    cli = [sys.executable, "-m", "indexer.cli"]
    built = subprocess.run([*cli, "index", str(REPO / "corpus"), "--index-dir", str(index_dir)],
                           capture_output=True, text=True, cwd=REPO)
    assert built.returncode == 0, built.stderr
    assert "Indexed 3 articles" in built.stdout
    found = subprocess.run([*cli, "search", "Denza", "--json", "-k", "1", "--index-dir", str(index_dir)],
                           capture_output=True, text=True, cwd=REPO)
    assert found.returncode == 0, found.stderr
    assert '"article_id": "000_27e84a60694065d5"' in found.stdout


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory):
    """The int8 ONNX embedder, exported from the packaged weights into this test session's own cache."""
    from indexer.onnx_embedder import OnnxEmbedder

    embedder = OnnxEmbedder(cache=tmp_path_factory.mktemp("onnx-cache"))
    embedder.warm_up()
    return embedder


def test_onnx_int8_vectors_match_the_reference_model(onnx_embedder, real_embedder):
    texts = [
        "Which company did Daimler team up with for Denza?",
        "Xiaomi is in talks with Beijing Automotive Group and Brilliance about making electric cars. " * 8,
        "比亞迪",
        "cars",
    ]
    fast, reference = onnx_embedder.embed(texts), real_embedder.embed(texts)
    assert fast.shape == (4, 384) and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-4)
    cosines = (fast * reference).sum(axis=1)
    assert cosines.min() >= 0.97 and cosines.mean() >= 0.985, cosines
    assert onnx_embedder.embed([]).shape == (0, 384)
    info = json.loads((onnx_embedder.model_path.parent / "export.json").read_text())
    assert info["probe_min_cosine_vs_fp32"] >= 0.98


def test_token_vectors_of_both_backends_agree_and_pool_to_the_sentence_vector(onnx_embedder, real_embedder):
    from indexer.late_interaction import maxsim

    texts = ["Which company did Daimler team up with for Denza?", "比亞迪 and BYD", "cars"]
    fast, reference = onnx_embedder.embed_tokens(texts), real_embedder.embed_tokens(texts)
    for f, r, text in zip(fast, reference, texts, strict=True):
        pieces = len(onnx_embedder._tokenizer.encode(text).ids) - 2  # without [CLS] and [SEP]
        assert f.shape == r.shape == (pieces, 384)
        np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-4)
        assert (f * r).sum(axis=1).mean() >= 0.95  # int8 against fp32, token by token
    # A passage about the query's subject matches its tokens better than an unrelated one.
    query, *passages = real_embedder.embed_tokens([
        "Who makes the Denza with Daimler?",
        "Daimler has teamed up with BYD to make electric cars under the nameplate Denza.",
        "The central bank left interest rates unchanged on Thursday.",
    ])
    related, unrelated = maxsim(query, passages)
    assert related > unrelated + 0.1, (related, unrelated)
    assert onnx_embedder.embed_tokens([]) == [] and real_embedder.embed_tokens([]) == []


def test_word_piece_ids_line_up_with_the_token_vectors(onnx_embedder, real_embedder):
    """idf-weighted MaxSim weighs token vector i by word piece i: both lists must be row for row."""
    texts = ["", "   ", "\u200b", "比亞迪 and BYD", "Zu\u0308rich ﬁbrosis", "x", " ".join(["electric"] * 400)]
    for embedder in (onnx_embedder, real_embedder):
        ids, tokens = embedder.token_ids(texts), embedder.embed_tokens(texts)
        assert [len(i) for i in ids] == [len(t) for t in tokens], type(embedder).__name__
        assert len(ids[-1]) == 254  # truncated at the model's 256 word pieces, [CLS] and [SEP] left out
        assert embedder.token_ids([]) == []
    np.testing.assert_array_equal(onnx_embedder.token_ids(texts)[3], real_embedder.token_ids(texts)[3])


def test_one_onnx_run_gives_the_vectors_and_the_token_vectors(onnx_embedder):
    texts = ["Which company did Daimler team up with for Denza?", "Xiaomi electric car talks " * 20, "cars"]
    vectors, tokens = onnx_embedder.embed_with_tokens(texts)
    np.testing.assert_array_equal(vectors, onnx_embedder.embed(texts))  # the same batches: the same vectors
    for mine, alone in zip(tokens, onnx_embedder.embed_tokens(texts), strict=True):
        assert mine.shape == alone.shape
        assert (mine * alone).sum(axis=1).mean() >= 0.98  # int8 scales each batch: another batch, nearly the same
    empty = onnx_embedder.embed_with_tokens([])
    assert empty[0].shape == (0, 384) and empty[1] == []


def test_a_late_interaction_index_of_the_real_model_answers(tmp_path: Path, onnx_embedder):
    from indexer.build import build_index
    from indexer.corpus import load_corpus
    from indexer.search import SearchConfig

    build_index(load_corpus(REPO / "corpus")[0], tmp_path, onnx_embedder, progress=False, late_interaction=True)
    index = SearchIndex.load(tmp_path, onnx_embedder)
    assert index.config.late_interaction and index.manifest.late_interaction["tokens"] > 1000
    hits = index.search("Which company did Daimler team up with for Denza?", k=3)
    assert hits[0].citation.article_id == DAIMLER
    plain = SearchIndex.load(tmp_path, onnx_embedder, SearchConfig()).search(
        "Which company did Daimler team up with for Denza?", k=3)
    assert hits[0].score > plain[0].score  # the MaxSim share is added on top of the fused score


def test_onnx_index_answers_like_the_reference(tmp_path: Path, onnx_embedder, real_index: SearchIndex):
    from indexer.build import build_index
    from indexer.corpus import load_corpus

    build_index(load_corpus(REPO / "corpus")[0], tmp_path, onnx_embedder, progress=False)
    fast = SearchIndex.load(tmp_path, onnx_embedder)
    assert fast.manifest.embedder_backend.startswith("onnx-int8")
    for question in ("Which company did Daimler team up with for Denza?", "Who is Xiaomi negotiating with?"):
        assert fast.search(question, k=1)[0].chunk_id == real_index.search(question, k=1)[0].chunk_id  # hybrid
        # Dense alone, int8 may swap two close passages (the Xiaomi question's top two of two Xiaomi
        # articles, 0.004 apart in int8, 0.03 in fp32) but not bring in another.
        expected = [h.chunk_id for h in real_index.search(question, k=2, mode="dense")]
        got = [h.chunk_id for h in fast.search(question, k=2, mode="dense")]
        assert got[0] in expected and expected[0] in got
