"""The API in a real uvicorn process, over real HTTP on 127.0.0.1 (a free port each time)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from indexer.build import build_index
from indexer.corpus import load_corpus
from indexer.embedding import FakeEmbedder
from indexer.search import SearchIndex
from tests.conftest import DAIMLER, REPO, SEED_CORPUS, XIAOMI_BLOOMBERG, XIAOMI_HT

BODY_LIMIT = 1024
FAKE_SERVER = """
import sys, uvicorn
from api.app import create_app
from api.settings import Settings
from indexer.embedding import FakeEmbedder
settings = Settings(index_dir=sys.argv[1], max_body_bytes=int(sys.argv[3]))
uvicorn.run(create_app(settings, embedder=FakeEmbedder()), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if request(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready after {seconds}s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """uvicorn serving corpus/ indexed with the fake embedder; yields the port."""
    root = tmp_path_factory.mktemp("served") / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    port = free_port()
    log = root.parent / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(root), str(port), str(BODY_LIMIT)],
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, process, log, seconds=60)
        yield port
    finally:
        stop(process)


def test_search_over_http(fake_server: int):
    status, body = request(fake_server, "GET", "/search?q=Daimler+Denza&k=2")
    assert status == 200 and body["hits"][0]["citation"]["article_id"] == DAIMLER
    status, body = request(fake_server, "POST", "/search", json.dumps({"q": "比亞迪", "mode": "lexical"}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200 and body["query"] == "比亞迪" and body["hits"][0]["citation"]["article_id"] == DAIMLER
    status, body = request(fake_server, "GET", "/search?q=" + quote("🚗 électrique"))
    assert status == 200 and body["query"] == "🚗 électrique"


def test_bad_input_over_http(fake_server: int):
    status, body = request(fake_server, "GET", "/search?q=cars&k=0")
    assert status == 422 and body["error"]["code"] == "invalid_parameter"
    status, body = request(fake_server, "POST", "/ask", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, body = request(fake_server, "GET", "/articles/no/such/id")
    assert status == 404 and body["error"]["code"] == "article_not_found"


def test_concurrent_requests_over_http(fake_server: int):
    queries = ["Daimler", "Xiaomi", "Brilliance Chery", "Beijing Automotive", "Smart cars", "BYD Denza"] * 5

    def ids(q: str) -> list[str]:
        status, body = request(fake_server, "GET", "/search?q=" + quote(q))
        assert status == 200
        return [h["chunk_id"] for h in body["hits"]]

    sequential = [ids(q) for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(ids, queries))
    assert concurrent == sequential


def _raw_response(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request head and some body bytes (never finishing a too-large body); read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            data = sock.recv(65536)  # times out (fails) if the server waits for the rest of the body
            if not data:
                break
            received += data
        return received


def test_declared_oversized_body_is_refused_before_it_is_sent(fake_server: int):
    head = (b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n")
    answer = _raw_response(fake_server, head, [])  # not one byte of the 50 MB body is sent
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"payload_too_large"' in answer and str(BODY_LIMIT).encode() in answer


def test_streamed_oversized_body_is_refused_at_the_limit(fake_server: int):
    head = (b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 600
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer = _raw_response(fake_server, head, [chunk, chunk])  # 1200 bytes so far, no final chunk
    assert answer.startswith(b"HTTP/1.1 413") and b'"payload_too_large"' in answer


def test_a_client_gone_mid_body_is_not_counted_as_a_500(fake_server: int):
    def search_posts(status: str) -> float:
        connection = http.client.HTTPConnection("127.0.0.1", fake_server, timeout=30)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        sample = f'newsdesk_http_requests_total{{endpoint="/search",method="POST",status="{status}"}} '
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample))

    before = search_posts("499")
    head = (b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    with socket.create_connection(("127.0.0.1", fake_server), timeout=10) as sock:
        sock.sendall(head + b'{"q": "ca')  # 9 of the 100 bytes, then hang up
    deadline = time.monotonic() + 10
    while search_posts("499") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert search_posts("499") == before + 1
    assert search_posts("500") == 0


@pytest.mark.integration
def test_newsdesk_serve_with_the_real_model(real_index: SearchIndex, tmp_path: Path):
    """`newsdesk serve` end to end: prints the URL, loads MiniLM, answers over HTTP, stops on Ctrl+C."""
    root = real_index.path.parent.parent  # <root>/builds/<id>
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "indexer.cli", "serve", "--index-dir", str(root), "--port", str(port)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    try:
        wait_ready(port, process, log, seconds=120)
        assert f"http://127.0.0.1:{port}/" in log.read_text()
        question = quote("Which company did Daimler team up with for Denza?")
        status, body = request(port, "GET", f"/search?k=3&q={question}")
        assert status == 200
        top = body["hits"][0]
        assert top["citation"]["article_id"] == DAIMLER and "BYD" in top["text"]
        status, article = request(port, "GET", f"/articles/{DAIMLER}")
        assert article["text"][top["citation"]["start"] : top["citation"]["end"]] == top["text"]
        status, answer = request(port, "POST", "/ask",
                                 json.dumps({"question": "Who is Xiaomi negotiating with to build cars?"}).encode(),
                                 {"Content-Type": "application/json"})
        assert status == 200 and answer["passages"]
        assert {p["citation"]["article_id"] for p in answer["passages"]} & {XIAOMI_BLOOMBERG, XIAOMI_HT}
    finally:
        code = stop(process)
    assert code == 0, log.read_text()
