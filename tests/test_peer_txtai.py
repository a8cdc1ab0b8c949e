"""The txtai side-by-side report: who is ahead on each row (no txtai needed)."""

from __future__ import annotations

from eval.peer_txtai_report import ONE_THREAD, ahead, markdown, table, verdicts


def _report() -> dict:
    both = {"newsdesk": 0.0, "txtai": 0.0}
    return {
        "dataset": "toy", "split": "test", "documents": 3, "queries": 2, "subset": False, "command": "python -m x",
        "build_s": {"newsdesk": 10.0, "txtai": 20.0},
        "ndcg@10": {"newsdesk": {"hybrid": 0.73, "dense": 0.70, "lexical": 0.60},
                    "txtai": {"hybrid": 0.65, "dense": 0.71, "lexical": 0.60}},
        "latency_ms": {name: {"p50": 10.0, "p95": 20.0, "p99": 30.0} for name in ("newsdesk", "txtai", ONE_THREAD)},
        "throughput": {name: {"qps": 50.0, "errors": 0, "blocks": [{"throughput_rps": 50.0}]}
                       for name in ("newsdesk", "txtai", ONE_THREAD)},
        "rss_mb": {**both, ONE_THREAD: 1.0},
        "settings": {"concurrency": 8, "latency_requests": 200, "rounds": 2, "duration_s": 30, "http_query_pool": 9,
                     "newsdesk": "defaults", "txtai_config": {"backend": "faiss"}},
        "versions": {"newsdesk venv": {"faiss-cpu": "1"}, "txtai venv": {"txtai": "9"}},
        "machine": {"cores": 2, "cpu": "Xeon", "gpu": "none", "python": "3.11", "load_avg_1_5_15m": [1, 1, 1]},
        "load_avg_start": [1, 1, 1],
    }


def test_ahead_reads_each_direction() -> None:
    assert ahead(10.0, 20.0, "lower") == "newsdesk (2.00x)"
    assert ahead(30.0, 60.0, "higher") == "txtai (2.00x)"
    assert ahead(0.70, 0.71, "score") == "txtai (+0.010)"
    assert ahead(0, 0, "lower") == "tie"
    assert ahead(0, 3, "lower") == "newsdesk"  # no ratio against zero


def test_report_names_the_rows_txtai_wins() -> None:
    report = _report()
    rows = {label: verdict for label, _, _, verdict in verdicts(report)}
    assert rows["index build, cold (s)"] == "newsdesk (2.00x)"
    assert rows["nDCG@10, hybrid (default)"] == "newsdesk (+0.080)"
    assert rows["HTTP throughput, 8 clients (searches/s)"] == "tie"
    page = markdown({"toy": report})
    assert "txtai ahead on: nDCG@10, dense only: txtai (+0.010)." in page
    lines = table(report)
    assert lines[0].endswith(f"| {ONE_THREAD} (not its default) |")
    assert "| nDCG@10, hybrid (default) | 0.73 | 0.65 | newsdesk (+0.080) | as txtai |" in lines
