#!/usr/bin/env python
"""Latency of GET /search (or POST /ask) over HTTP: N sequential requests on one keep-alive connection, loopback only.

Starts `newsdesk serve` on a free 127.0.0.1 port for --index-dir (or uses --url, which must
be a loopback address), sends a few warm-up requests, then N distinct queries one after
another, and reports p50 / p95 / p99 of the client-side wall time (request sent -> JSON read)
and of the server's own `took_ms`. Distinct queries matter: the index caches query vectors.

    .venv/bin/python scripts/http_latency.py --index-dir .newsdesk/index \\
        --queries ../shared/data/realtimeqa/queries.jsonl -n 200 --out latency.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_REQUESTS = 10_000
FALLBACK_QUERIES = [
    "Which company did Daimler team up with for Denza?",
    "Who is Xiaomi negotiating with to build cars?",
    "electric vehicle joint venture in China",
    "regulatory approval for new carmakers",
    "smartphone maker plans its own car brand",
    "foreign ownership cap on car ventures",
    "battery-powered Smart cars",
    "比亞迪",
]


def load_queries(path: Path | None, n: int) -> list[str]:
    """The first `n` distinct queries from a .jsonl (text/query/q field) or a text file (one a line)."""
    if path is None:
        print(f"warning: no --queries file; cycling {len(FALLBACK_QUERIES)} built-in queries, so most "
              "requests hit the query-vector cache and look faster than real traffic", file=sys.stderr)
        return [FALLBACK_QUERIES[i % len(FALLBACK_QUERIES)] for i in range(n)]
    seen: dict[str, None] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            if path.suffix == ".jsonl":
                record = json.loads(line)
                line = str(record.get("text") or record.get("query") or record.get("q") or "").strip()
            if line:
                seen.setdefault(line, None)
            if len(seen) == n:
                break
    if len(seen) < n:
        raise SystemExit(f"{path} has only {len(seen)} distinct queries; ask for -n {len(seen)} or fewer")
    return list(seen)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(connection: http.client.HTTPConnection, path: str) -> tuple[int, dict]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def post_json(connection: http.client.HTTPConnection, path: str, payload: dict) -> tuple[int, dict]:
    body = json.dumps(payload).encode("utf-8")
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def wait_ready(host: str, port: int, process: subprocess.Popen | None, timeout: float, path: str = "/readyz") -> dict:
    """The JSON of the first 200 from GET `path`; exits when the server dies or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server ({process.args[0]} ...) exited with code {process.returncode}")
        try:
            connection = http.client.HTTPConnection(host, port, timeout=5)
            status, body = get_json(connection, path)
            connection.close()
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"service on {host}:{port} not ready after {timeout:.0f}s")


def stop(process: subprocess.Popen) -> None:
    """Ctrl+C for a server started here, then kill if it has not exited in 30 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def measure(host: str, port: int, queries: list[str], k: int, mode: str, warmup: int, endpoint: str) -> dict:
    connection = http.client.HTTPConnection(host, port, timeout=60)

    def call(query: str) -> tuple[int, dict]:
        if endpoint == "ask":
            return post_json(connection, "/ask", {"question": query, "k": k})
        return get_json(connection, f"/search?k={k}&mode={mode}&q=" + quote(query))

    for i in range(warmup):
        call(f"warm-up request {i}")
    client_ms: list[float] = []
    server_ms: list[float] = []
    for query in queries:
        started = time.perf_counter()
        status, body = call(query)
        client_ms.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"/{endpoint} for {query!r} answered {status}: {body}")
        if "took_ms" in body:
            server_ms.append(float(body["took_ms"]))
    connection.close()
    results = {"client_ms": summary(client_ms)}
    if server_ms:
        results["server_took_ms"] = summary(server_ms)
    return results


def summary(values: list[float]) -> dict[str, float]:
    """Percentiles of `values` (ms), as every measuring script reports them."""
    if len(values) < 2:
        return {}
    return {
        "p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2), "mean": round(statistics.fmean(values), 2),
        "min": round(min(values), 2), "max": round(max(values), 2),
    }


@dataclass
class Server:
    host: str
    port: int
    process: subprocess.Popen | None  # None: a service this script did not start
    ready: dict  # the /readyz body
    startup_s: float | None = None  # process start to ready (cold start), when started here

    def rss_mb(self) -> dict[str, float]:
        """The server's resident memory now, split into anonymous and file-backed (mmap) pages."""
        if self.process is None:
            return {}
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[name] = round(int(value.split()[0]) / 1024, 1)
        return fields


@contextmanager
def served(index_dir: Path | None, url: str | None = None, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`newsdesk serve` for `index_dir` on a free loopback port until the block ends, or the service at `url`."""
    if url:
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK or parts.port is None:
            raise SystemExit("--url must be a loopback address with a port, e.g. http://127.0.0.1:8000")
        yield Server(parts.hostname, parts.port, None, wait_ready(parts.hostname, parts.port, None, timeout=60))
        return
    host, port = "127.0.0.1", free_port()
    command = [sys.executable, "-m", "indexer.cli", "serve", "--index-dir", str(index_dir),
               "--host", host, "--port", str(port), "--log-level", "warning"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        ready = wait_ready(host, port, process, timeout=600)
        yield Server(host, port, process, ready, round(time.monotonic() - started, 2))
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--index-dir", type=Path, help="start `newsdesk serve` on this index")
    target.add_argument("--url", help="measure an already running service (loopback only)")
    parser.add_argument("--queries", type=Path, help=".jsonl (text field) or text file of queries")
    parser.add_argument("-n", type=int, default=200, help=f"measured requests (1-{MAX_REQUESTS}, default 200)")
    parser.add_argument("-k", type=int, default=10, help="passages per search (default 10)")
    parser.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    parser.add_argument("--endpoint", choices=["search", "ask"], default="search", help="GET /search or POST /ask")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests first (default 5)")
    parser.add_argument("--label", default="", help="name of the corpus, for the report")
    parser.add_argument("--out", type=Path, help="also write the report here as JSON")
    args = parser.parse_args()
    if not 1 <= args.n <= MAX_REQUESTS:
        parser.error(f"-n must be between 1 and {MAX_REQUESTS}")
    queries = load_queries(args.queries, args.n)

    with served(args.index_dir, args.url) as server:
        load_before = os.getloadavg()[0]
        results = measure(server.host, server.port, queries, args.k, args.mode, args.warmup, args.endpoint)
        ready = server.ready
    report = {
        "label": args.label,
        "embed_threads": os.environ.get("NEWSDESK_EMBED_THREADS", "default (1)") if server.process else "unknown",
        "endpoint": args.endpoint, "requests": args.n, "distinct_queries": len(set(queries)),
        "k": args.k, "mode": args.mode,
        "index": {key: ready[key] for key in ("index_id", "model_id", "articles", "chunks")},
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            # other processes on the machine inflate the figures; the 1-minute load says how busy it was
            "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
        },
        **results,
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
