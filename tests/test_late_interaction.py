"""MaxSim: each query token's best match in the passage, averaged over the query."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.late_interaction import maxsim, normalise_rows


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
