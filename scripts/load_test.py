#!/usr/bin/env python
"""Steady concurrent load on GET /search over loopback, bounded in time and in requests.

Starts `newsdesk serve` on a free 127.0.0.1 port for --index-dir (or uses --url, which
must be a loopback address). C client threads, each on its own keep-alive connection,
send searches back to back for --duration seconds (at most --max-requests in all),
cycling through distinct queries. A 503 with Retry-After is counted as shed and the
client waits as told, like a well-behaved client; anything else that is not a 200 (or
a connection failure) is an error. Reports throughput, latency percentiles of the
answered searches, the server's own took_ms, per-10-second throughput, and the errors.

    .venv/bin/python scripts/load_test.py --index-dir .newsdesk/index \\
        --queries ../shared/data/realtimeqa/queries.jsonl -c 8 --duration 60 \\
        --out eval/results/load.json
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_latency import load_queries, served, summary  # noqa: E402

MAX_DURATION = 600.0
MAX_REQUESTS = 200_000
MAX_CONCURRENCY = 256


@dataclass
class Tally:
    """Every outcome, shared by the client threads."""

    latencies_ms: list[float] = field(default_factory=list)
    took_ms: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)  # seconds since start, answered searches
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(host: str, port: int, next_query: itertools.count, queries: list[str], path_of: Callable[[str], str],
           start: float, stop_at: float, budget: threading.Semaphore, tally: Tally) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    while time.monotonic() < stop_at and budget.acquire(blocking=False):
        query = queries[next(next_query) % len(queries)]
        sent = time.monotonic()
        retry_after = 0.0
        try:
            connection.request("GET", path_of(query))
            response = connection.getresponse()
            body = response.read()
            elapsed = (time.monotonic() - sent) * 1000
            if response.status == 200:
                answer = json.loads(body)
                took = answer.get("took_ms") if isinstance(answer, dict) else None  # newsdesk's own timing
                with tally.lock:
                    tally.outcomes["ok"] += 1
                    tally.latencies_ms.append(elapsed)
                    if took is not None:
                        tally.took_ms.append(float(took))
                    tally.finished_at.append(time.monotonic() - start)
                continue
            code = _error_code(body)
            if response.status == 503 and code == "overloaded":
                retry_after = float(response.getheader("Retry-After") or 1)
                with tally.lock:
                    tally.outcomes["shed (503 overloaded)"] += 1
            else:
                with tally.lock:
                    tally.outcomes[f"error {response.status} {code}"] += 1
                    tally.errors.append(f"{response.status} {body[:200]!r}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            with tally.lock:
                tally.outcomes[f"error {type(exc).__name__}"] += 1
                tally.errors.append(repr(exc))
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
        if retry_after:
            time.sleep(min(retry_after, max(0.0, stop_at - time.monotonic())))
    connection.close()


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


def run(args: argparse.Namespace, host: str, port: int, queries: list[str]) -> dict:
    def path_of(query: str) -> str:
        return f"/search?k={args.k}&mode={args.mode}&q={quote(query)}"

    return steady_load(host, port, queries, path_of, args.concurrency, args.duration, args.max_requests, args.warmup)


def steady_load(host: str, port: int, queries: list[str], path_of: Callable[[str], str], concurrency: int,
                duration: float, max_requests: int = MAX_REQUESTS, warmup: int = 10, first_query: int = 0) -> dict:
    """`concurrency` clients sending GET path_of(query) back to back for `duration` s; the report.

    Queries are taken in turn from `first_query` on, so a caller can continue where an earlier
    run stopped (the report's `requests` says how many were taken).
    """
    # Warm-up, unmeasured: the first searches pay for lazy loading and caches.
    warm = http.client.HTTPConnection(host, port, timeout=60)
    for i in range(warmup):
        warm.request("GET", path_of(f"warm-up request {i}"))
        warm.getresponse().read()
    warm.close()
    tally = Tally()
    budget = threading.Semaphore(max_requests)
    counter = itertools.count(first_query)
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    stop_at = start + duration
    threads = [
        threading.Thread(target=client, args=(host, port, counter, queries, path_of, start, stop_at, budget, tally),
                         daemon=True)
        for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 120)
    seconds = time.monotonic() - start
    sent = sum(tally.outcomes.values())
    errors = sum(n for name, n in tally.outcomes.items() if name.startswith("error"))
    buckets = Counter(int(t // 10) for t in tally.finished_at)
    return {
        "seconds": round(seconds, 1),
        "requests": sent,
        "answered": tally.outcomes["ok"],
        "shed_503": tally.outcomes["shed (503 overloaded)"],
        "errors": errors,
        "outcomes": dict(tally.outcomes),
        "first_errors": tally.errors[:10],
        "throughput_rps": round(tally.outcomes["ok"] / seconds, 1),
        "throughput_per_10s_rps": [round(buckets[b] / 10, 1) for b in range(int(seconds // 10))],
        "distinct_queries": min(len(queries), sent),
        "latency_ms": summary(tally.latencies_ms),
        "server_took_ms": summary(tally.took_ms),
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--index-dir", type=Path, help="start `newsdesk serve` on this index")
    target.add_argument("--url", help="load an already running service (loopback only)")
    parser.add_argument("--queries", type=Path, help=".jsonl (text field) or text file of queries")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help=f"seconds (default 60, at most {MAX_DURATION:.0f})")
    parser.add_argument("--max-requests", type=int, default=50_000,
                        help=f"stop after this many (at most {MAX_REQUESTS})")
    parser.add_argument("-k", type=int, default=10, help="passages per search (default 10)")
    parser.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests first (default 10)")
    parser.add_argument("--server-limit", type=int,
                        help="NEWSDESK_MAX_CONCURRENT_SEARCHES for the server this script starts")
    parser.add_argument("--label", default="", help="name of the run, for the report")
    parser.add_argument("--out", type=Path, help="also write the report here as JSON")
    args = parser.parse_args()
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be 1-{MAX_CONCURRENCY}")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be more than 0 and at most {MAX_DURATION:.0f} seconds")
    if not 1 <= args.max_requests <= MAX_REQUESTS:
        parser.error(f"--max-requests must be 1-{MAX_REQUESTS}")
    queries = load_queries(args.queries, 4000 if args.queries else 500)

    env = {"NEWSDESK_MAX_CONCURRENT_SEARCHES": str(args.server_limit)} if args.server_limit else {}
    with served(args.index_dir, args.url, env) as server:
        results = run(args, server.host, server.port, queries)
        ready, process = server.ready, server.process
        env = {**os.environ, **env}
    report = {
        "label": args.label,
        "concurrency": args.concurrency, "duration_s": args.duration, "k": args.k, "mode": args.mode,
        "server_limit": env.get("NEWSDESK_MAX_CONCURRENT_SEARCHES", "default (32)") if process else "unknown",
        "embed_threads": env.get("NEWSDESK_EMBED_THREADS", "default (1)") if process else "unknown",
        "index": {key: ready[key] for key in ("index_id", "model_id", "articles", "chunks")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        **results,
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if results["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
