"""The real all-MiniLM-L6-v2 model on corpus/ (loaded once per session)."""

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
