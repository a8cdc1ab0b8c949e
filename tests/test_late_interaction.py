"""MaxSim: each query token's best match in the passage, averaged over the query."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.late_interaction import document_frequencies, idf_weights, maxsim, normalise_rows, pack_signs


def _unit(rows: list[list[float]]) -> np.ndarray:
    return normalise_rows(np.array(rows, dtype=np.float32))


def test_maxsim_is_the_mean_of_each_query_tokens_best_cosine():
    query = _unit([[1, 0, 0], [0, 1, 0]])
    holds_both = _unit([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    holds_one = _unit([[1, 0, 0], [0, 0, 1]])
    near = _unit([[1, 1, 0]])
    scores = maxsim(query, [holds_both, holds_one, near])
    np.testing.assert_allclose(scores, [1.0, 0.5, np.sqrt(0.5)], rtol=1e-6)
    # word order and repetition do not matter; only the best match of each query token counts
    assert maxsim(query, [np.vstack([holds_both[::-1], holds_both])])[0] == pytest.approx(1.0)


def test_maxsim_handles_empty_sides():
    query = _unit([[1, 0]])
    assert maxsim(query, []).shape == (0,)
    np.testing.assert_array_equal(maxsim(query, [np.zeros((0, 2), np.float32), query]), [0.0, 1.0])
    np.testing.assert_array_equal(maxsim(np.zeros((0, 2), np.float32), [query]), [0.0])


def test_normalise_rows_keeps_a_zero_row_zero():
    out = normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_sign_bits_round_trip_to_unit_sign_vectors():
    from indexer.late_interaction import pack_signs, unpack_signs

    rng = np.random.default_rng(0)
    for dimension in (384, 64, 13):  # 13: the last byte is part padding
        tokens = rng.standard_normal((5, dimension)).astype(np.float32)
        bits = pack_signs(tokens)
        assert bits.dtype == np.uint8 and bits.shape == (5, (dimension + 7) // 8)
        back = unpack_signs(bits, dimension)
        np.testing.assert_allclose(back, np.where(tokens > 0, 1.0, -1.0) / np.sqrt(dimension), rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, rtol=1e-6)


def test_maxsim_against_sign_vectors_keeps_the_float_order():
    """Stored bits are compared with the query's float vectors: a passage holding near copies of the
    query's tokens still beats one that holds only some of them, and one that holds none."""
    from indexer.late_interaction import pack_signs, unpack_signs

    rng = np.random.default_rng(1)
    query = normalise_rows(rng.standard_normal((6, 384)))
    noise = normalise_rows(rng.standard_normal((40, 384)))
    near = normalise_rows(query + 0.5 * rng.standard_normal(query.shape) / np.sqrt(384))
    passages = [np.vstack([noise[:20], near]), np.vstack([noise[20:], near[:2]]), noise]
    exact = maxsim(query, passages)
    signed = maxsim(query, [unpack_signs(pack_signs(p), 384) for p in passages])
    assert exact[0] > exact[1] > exact[2] and signed[0] > signed[1] > signed[2]
    assert signed[0] == pytest.approx(np.sqrt(2 / np.pi), abs=0.1)  # E|x| of a unit Gaussian's coordinates


def test_weighted_maxsim_counts_each_query_token_by_its_weight():
    query = _unit([[1, 0, 0], [0, 1, 0]])
    holds_first = _unit([[1, 0, 0]])
    holds_second = _unit([[0, 1, 0]])
    rare_first = np.array([3.0, 1.0])
    np.testing.assert_allclose(maxsim(query, [holds_first, holds_second], rare_first), [0.75, 0.25], rtol=1e-6)
    # equal weights are the plain mean; unusable weights (all zero, wrong length, not finite) fall back to it
    plain = maxsim(query, [holds_first, holds_second])
    for weights in (np.array([2.0, 2.0]), np.zeros(2), np.ones(3), np.array([np.nan, 1.0])):
        np.testing.assert_allclose(maxsim(query, [holds_first, holds_second], weights), plain, rtol=1e-6)


def test_document_frequencies_count_chunks_not_occurrences():
    chunks = [np.array([5, 5, 7]), np.array([7]), np.array([], dtype=np.int64), np.array([2, 7, 9])]
    for block in (1, 2, 10):
        frequencies = document_frequencies(chunks, block=block)
        np.testing.assert_array_equal(frequencies, [[2, 5, 7, 9], [1, 1, 3, 1]])
    assert document_frequencies([]).shape == (2, 0)


def test_idf_weights_are_bm25s_and_an_unseen_piece_weighs_most():
    frequencies = np.array([[2, 5, 7], [1, 2, 4]])
    weights = idf_weights(frequencies, 4, np.array([7, 5, 2, 3]))
    expected = [np.log(1 + (4 - df + 0.5) / (df + 0.5)) for df in (4, 2, 1, 0)]
    np.testing.assert_allclose(weights, expected)
    assert weights[0] < weights[1] < weights[2] < weights[3]
    np.testing.assert_allclose(idf_weights(np.zeros((2, 0), np.int64), 4, np.array([1, 2])), [expected[3]] * 2)


def test_a_sign_spool_takes_chunks_in_any_order_and_gives_them_back_in_chunk_order(tmp_path):
    from indexer.late_interaction import SPOOL_NAME, SignSpool, write_token_signs

    rng = np.random.default_rng(0)
    chunks = [pack_signs(rng.standard_normal((n, 16))) for n in (3, 0, 5, 1)]
    spool = SignSpool(tmp_path, len(chunks), 16)
    for i in (2, 0, 3, 1):  # the order a build embeds them in: cached first, then by length
        spool[i] = chunks[i]
    assert (tmp_path / SPOOL_NAME).exists() and len(spool) == 4
    for got, want in zip(spool, chunks, strict=True):
        np.testing.assert_array_equal(got, want)
    write_token_signs(tmp_path, spool, 16, np.zeros((2, 0), np.int64))
    stored = np.load(tmp_path / "token-signs.npy")
    np.testing.assert_array_equal(stored, np.vstack(chunks))
    spool.remove()
    assert not (tmp_path / SPOOL_NAME).exists()


def test_a_sign_spool_refuses_a_chunk_that_got_no_token_vectors(tmp_path):
    from indexer.late_interaction import SignSpool, write_token_signs

    spool = SignSpool(tmp_path, 2, 16)
    spool[1] = pack_signs(np.ones((2, 16)))
    with pytest.raises(ValueError, match="chunk 0 got no token vectors"):
        write_token_signs(tmp_path, spool, 16, np.zeros((2, 0), np.int64))
    spool.remove()
    (tmp_path / "other").mkdir()
    narrow = SignSpool(tmp_path / "other", 1, 16)
    with pytest.raises(ValueError, match="rows of 2 bytes"):
        narrow[0] = np.zeros((1, 3), np.uint8)
    narrow.remove()


def test_a_sign_spool_grows_for_chunks_numbered_as_they_arrive(tmp_path):
    from indexer.late_interaction import SignSpool

    spool = SignSpool(tmp_path, 0, 16)
    arrived = [pack_signs(np.full((n, 16), (-1) ** n)) for n in (2, 1, 3, 1, 2)]
    for bits in arrived:
        spool[len(spool)] = bits
    assert len(spool) == 5
    for got, want in zip(spool, arrived, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError):
        spool[5]
    spool.renumber(np.array([4, 0, 3, 1, 2]))  # the Ray engine puts them in article order
    for got, want in zip(spool, [arrived[i] for i in (4, 0, 3, 1, 2)], strict=True):
        np.testing.assert_array_equal(got, want)
    spool.remove()
