#!/usr/bin/env python
"""Serving figures for one index over loopback HTTP: cold start, RSS, one-client latency, 8-client throughput.

For each server setting (micro-batching off, then on) it starts `newsdesk serve` on
--index-dir and records: cold start (process start to /readyz 200), resident memory when
ready and after the load, /search latency p50/p95/p99 for one client sending --requests
distinct queries one after another, and searches/s for --concurrency clients sending
back to back for --duration seconds. Writes one JSON report.

    .venv/bin/python scripts/serving_bench.py --index-dir /work/cache/news-index \\
        --queries ../shared/data/realtimeqa_news/queries.jsonl --out eval/results/speed-serving.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_latency import load_queries, measure, served  # noqa: E402
from load_test import run as run_load  # noqa: E402

SETTINGS = {"micro-batching off (default)": {"NEWSDESK_MICRO_BATCH": "false"},
            "micro-batching on": {"NEWSDESK_MICRO_BATCH": "true"}}


def bench(index_dir: Path, env: dict[str, str], queries: list[str], args: argparse.Namespace) -> dict:
    with served(index_dir, env=env) as server:
        row: dict[str, object] = {"cold_start_s": server.startup_s, "rss_ready_mb": server.rss_mb(),
                                  "index": {k: server.ready[k] for k in ("index_id", "articles", "chunks")}}
        print(f"  ready in {server.startup_s}s; one client, {args.requests} queries", file=sys.stderr, flush=True)
        one = queries[: args.requests]
        row["one_client"] = measure(server.host, server.port, one, args.k, "hybrid", warmup=5, endpoint="search")
        print(f"  {args.concurrency} clients for {args.duration:.0f}s", file=sys.stderr, flush=True)
        load = argparse.Namespace(warmup=10, k=args.k, mode="hybrid", max_requests=200_000,
                                  concurrency=args.concurrency, duration=args.duration)
        row["concurrent"] = run_load(load, server.host, server.port, queries[args.requests:])
        row["rss_after_load_mb"] = server.rss_mb()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True, help=".jsonl (text field) or text file of queries")
    parser.add_argument("--requests", type=int, default=300, help="one-client requests (default 300)")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="clients for the throughput run (default 8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of concurrent load (default 30)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    queries = load_queries(args.queries, args.requests + 1500)
    report: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_1min_at_start": round(os.getloadavg()[0], 2)},
        "settings": {"k": args.k, "mode": "hybrid", "one_client_requests": args.requests,
                     "concurrency": args.concurrency, "duration_s": args.duration},
        "runs": {},
    }
    for label, env in SETTINGS.items():
        print(f"{label}:", file=sys.stderr, flush=True)
        report["runs"][label] = bench(args.index_dir, env, queries, args)  # type: ignore[index]
    report["machine"]["load_1min_at_end"] = round(os.getloadavg()[0], 2)  # type: ignore[index]
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
