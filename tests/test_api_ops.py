"""The API's operational side: health, readiness, metrics, limits, CORS, errors, concurrency, settings."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.body_limit import BodyLimitMiddleware
from api.cli import service_url
from api.settings import Settings
from indexer.build import build_index
from indexer.cli import main
from indexer.corpus import Article
from indexer.embedding import FakeEmbedder
from indexer.search import SearchIndex
from tests.conftest import DAIMLER, HeldEmbedder
from tests.test_api import assert_error


def serve(index_dir: Path, embedder=None, **settings) -> TestClient:
    app = create_app(Settings(index_dir=index_dir, **settings), embedder=embedder or FakeEmbedder())
    return TestClient(app, raise_server_exceptions=False)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (None when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))) == wanted:
            return float(match[3])
    return None


# ---- health, readiness, metrics ------------------------------------------------------------------


def test_health_and_readiness(index_dir: Path):
    loaded = SearchIndex.load(index_dir, FakeEmbedder())
    with serve(index_dir) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready.pop("loaded_at").endswith("+00:00")
        assert ready == {
            "status": "ready", "index_id": loaded.index_id, "model_id": FakeEmbedder.model_id,
            "articles": loaded.store.article_count, "chunks": loaded.store.chunk_count, "last_reload_error": None,
        }


def test_without_an_index_the_service_is_up_but_not_ready(tmp_path: Path):
    with serve(tmp_path / "empty") as client:
        assert client.get("/healthz").status_code == 200
        assert_error(client.get("/readyz"), 503, "index_unavailable", "newsdesk index")
        assert_error(client.get("/search", params={"q": "cars"}), 503, "index_unavailable", "newsdesk index")
        assert_error(client.post("/ask", json={"question": "cars?"}), 503, "index_unavailable")
        assert_error(client.get(f"/articles/{DAIMLER}"), 503, "index_unavailable")
        assert metric(client.get("/metrics").text, "newsdesk_index_loaded") == 0


def test_index_built_by_another_model_is_refused_with_the_fix(index_dir: Path):
    with serve(index_dir, embedder=FakeEmbedder(dimension=32)) as client:
        assert_error(client.get("/readyz"), 503, "index_unavailable", "Rebuild")


def test_metrics_count_by_route_template_and_report_index_size(index_dir: Path):
    loaded = SearchIndex.load(index_dir, FakeEmbedder())
    with serve(index_dir) as client, serve(index_dir) as other:
        for _ in range(3):
            client.get("/search", params={"q": "cars"})
        client.get("/search", params={"q": ""})
        client.get(f"/articles/{DAIMLER}")
        client.get("/articles/x/y/z")
        client.get("/wp-admin/setup.php")
        response = client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        text = response.text
        route = "/articles/{article_id:path}"
        assert metric(text, "newsdesk_http_requests_total", endpoint="/search", method="GET", status="200") == 3
        assert metric(text, "newsdesk_http_requests_total", endpoint="/search", method="GET", status="422") == 1
        assert metric(text, "newsdesk_http_requests_total", endpoint=route, method="GET", status="200") == 1
        assert metric(text, "newsdesk_http_requests_total", endpoint=route, method="GET", status="404") == 1
        assert metric(text, "newsdesk_http_requests_total", endpoint="<unmatched>", method="GET", status="404") == 1
        assert "x/y/z" not in text and "wp-admin" not in text
        assert metric(text, "newsdesk_http_request_duration_seconds_count", endpoint="/search", method="GET") == 4
        assert metric(text, "newsdesk_index_articles") == loaded.store.article_count
        assert metric(text, "newsdesk_index_chunks") == loaded.store.chunk_count
        assert metric(text, "newsdesk_index_info", index_id=loaded.index_id, model_id=FakeEmbedder.model_id) == 1
        # a second app in the same process has its own registry
        other_text = other.get("/metrics").text
        assert metric(other_text, "newsdesk_http_requests_total", endpoint="/search", method="GET", status="200") \
            is None


def test_swapping_the_index_changes_what_is_served(index_dir: Path, tmp_path: Path):
    other_root = tmp_path / "other"
    build_index([Article("solo", "Solo", "A single article about sodium batteries.")], other_root,
                FakeEmbedder(), progress=False)
    replacement = SearchIndex.load(other_root, FakeEmbedder())
    with serve(index_dir) as client:
        before = client.get("/readyz").json()
        old = client.app.state.holder.swap(replacement)
        assert old is not None and old.index_id == before["index_id"]
        after = client.get("/readyz").json()
        assert after["index_id"] == replacement.index_id and after["articles"] == 1
        assert client.get("/search", params={"q": "sodium"}).json()["hits"][0]["citation"]["article_id"] == "solo"
        assert metric(client.get("/metrics").text, "newsdesk_index_articles") == 1


# ---- errors that are not about input --------------------------------------------------------------


def test_unknown_route_and_wrong_method(index_dir: Path):
    with serve(index_dir) as client:
        assert_error(client.get("/nope"), 404, "not_found", "/nope", "/docs")
        assert_error(client.delete("/search"), 405, "method_not_allowed", "DELETE", "GET")
        assert_error(client.get("/ask"), 405, "method_not_allowed", "POST")
        # The Allow header names every method the path serves, from all of its routes.
        wrong = client.put("/search")
        assert_error(wrong, 405, "method_not_allowed", "GET, POST")
        assert wrong.headers["allow"] == "GET, POST"


def test_head_on_health_and_readiness(index_dir: Path, tmp_path: Path):
    with serve(index_dir) as client:
        assert client.head("/healthz").status_code == 200
        assert client.head("/readyz").status_code == 200
    with serve(tmp_path / "empty") as client:
        assert client.head("/healthz").status_code == 200
        assert client.head("/readyz").status_code == 503


class ExplodingEmbedder(FakeEmbedder):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if any("explode" in t for t in texts):
            raise RuntimeError("secret internal detail")
        return super().embed(texts)


def test_unexpected_exception_is_a_json_500_without_details(index_dir: Path):
    with serve(index_dir, embedder=ExplodingEmbedder()) as client:
        response = client.get("/search", params={"q": "explode", "mode": "dense"})
        message = assert_error(response, 500, "internal_error")
        assert "secret" not in response.text and "RuntimeError" not in response.text
        assert "logged" in message
        assert client.get("/search", params={"q": "cars"}).status_code == 200
        text = client.get("/metrics").text  # a real 500 still counts as one
        assert metric(text, "newsdesk_http_requests_total", endpoint="/search", method="GET", status="500") == 1
        assert metric(text, "newsdesk_http_requests_total", endpoint="/search", method="GET", status="499") is None


def test_a_client_gone_mid_body_counts_as_499_not_500(index_dir: Path):
    app = create_app(Settings(index_dir=index_dir, reload_interval=0), embedder=FakeEmbedder())
    incoming = iter([{"type": "http.request", "body": b'{"q": "ca', "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(incoming)

    async def send(message: dict) -> None:
        sent.append(message)

    async def scenario() -> str:
        async with app.router.lifespan_context(app):
            headers = [(b"content-type", b"application/json"), (b"content-length", b"20")]
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/search", "raw_path": b"/search", "root_path": "",
                     "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "server": ("test", 80)}
            await app(scope, receive, send)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return (await client.get("/metrics")).text

    text = asyncio.run(scenario())
    assert sent == []  # nothing was sent: there was no one to send it to
    assert metric(text, "newsdesk_http_requests_total", endpoint="/search", method="POST", status="499") == 1
    assert metric(text, "newsdesk_http_requests_total", endpoint="/search", method="POST", status="500") is None


# ---- request size ---------------------------------------------------------------------------------


def test_oversized_body_is_refused(index_dir: Path):
    with serve(index_dir, max_body_bytes=1024) as client:
        big = {"q": "cars " * 400}
        assert_error(client.post("/search", json=big), 413, "payload_too_large", "1024")
        assert client.post("/search", json={"q": "cars"}).status_code == 200


def _run_guard(chunks: list[bytes], headers: list[tuple[bytes, bytes]], limit: int):
    """Drive BodyLimitMiddleware directly; return (messages read, app called, response status, body)."""
    read = 0
    called = False
    sent: list[dict] = []

    async def receive():
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message):
        sent.append(message)

    async def inner(scope, receive_, send_):
        nonlocal called
        called = True
        message = await receive_()
        body = message["body"]
        await send_({"type": "http.response.start", "status": 200, "headers": []})
        await send_({"type": "http.response.body", "body": body})

    scope = {"type": "http", "method": "POST", "path": "/search", "headers": headers}
    asyncio.run(BodyLimitMiddleware(inner, max_bytes=limit)(scope, receive, send))
    return read, called, sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_body_guard_refuses_by_content_length_without_reading():
    read, called, status, body = _run_guard([b"x" * 10] * 100, [(b"content-length", b"1000")], limit=100)
    assert (read, called, status) == (0, False, 413)
    assert b'"payload_too_large"' in body


def test_body_guard_stops_reading_a_streamed_body_at_the_limit():
    chunks = [b"x" * 10] * 100  # 1000 bytes, chunked, no Content-Length
    read, called, status, _ = _run_guard(chunks, [(b"transfer-encoding", b"chunked")], limit=100)
    assert (read, called, status) == (11, False, 413)  # the 11th chunk passes 100 bytes; the rest is never read


def test_body_guard_passes_small_bodies_through_whole():
    read, called, status, body = _run_guard([b"ab", b"cd", b"e"], [(b"transfer-encoding", b"chunked")], limit=100)
    assert (read, called, status, body) == (3, True, 200, b"abcde")


# ---- concurrency ----------------------------------------------------------------------------------


def test_searches_run_off_the_event_loop(index_dir: Path):
    embedder = HeldEmbedder("block", timeout=10)
    app = create_app(Settings(index_dir=index_dir), embedder=embedder)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                slow = asyncio.create_task(client.get("/search", params={"q": "block me", "mode": "dense"}))
                assert await asyncio.to_thread(embedder.entered.wait, 5)
                health = await client.get("/healthz")
                assert health.status_code == 200
                assert not slow.done(), "healthz answered while the search was still running"
                embedder.release.set()
                assert (await slow).status_code == 200

    asyncio.run(scenario())


def test_concurrent_searches_get_their_own_results(index_dir: Path):
    app = create_app(Settings(index_dir=index_dir), embedder=FakeEmbedder())
    queries = ["Daimler Denza", "Xiaomi Brilliance", "BYD", "Beijing Automotive", "Smart cars", "比亞迪"] * 4

    async def scenario() -> tuple[list, list]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                async def ids(q: str) -> list[str]:
                    body = (await client.get("/search", params={"q": q, "k": 5})).json()
                    return [h["chunk_id"] for h in body["hits"]]

                sequential = [await ids(q) for q in queries]
                concurrent = await asyncio.gather(*(ids(q) for q in queries))
                return sequential, list(concurrent)

    sequential, concurrent = asyncio.run(scenario())
    assert concurrent == sequential and all(sequential)


# ---- CORS, static files, docs ---------------------------------------------------------------------


def test_no_cors_headers_by_default(index_dir: Path):
    with serve(index_dir) as client:
        response = client.get("/search", params={"q": "cars"}, headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_configured_origins(index_dir: Path):
    with serve(index_dir, cors_origins=["https://news.example"]) as client:
        preflight = {"Origin": "https://news.example", "Access-Control-Request-Method": "GET"}
        ok = client.options("/search", headers=preflight)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://news.example"
        other = client.get("/search", params={"q": "cars"}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        error = client.get("/search", params={"q": ""}, headers={"Origin": "https://news.example"})
        assert error.status_code == 422 and error.headers["access-control-allow-origin"] == "https://news.example"


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
         ("origin 'https://evil.example'", "NEWSDESK_CORS_ORIGINS")),
        ({"Origin": "https://news.example", "Access-Control-Request-Method": "PUT"}, ("method 'PUT'", "GET, POST")),
        ({"Origin": "https://news.example", "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": "content-type, x-secret"}, ("header 'x-secret'", "x-api-key")),
    ],
)
def test_a_refused_cors_preflight_is_a_json_error(index_dir: Path, headers: dict[str, str], words: tuple[str, ...]):
    with serve(index_dir, cors_origins=["https://news.example"]) as client:
        response = client.options("/search", headers=headers)
        assert_error(response, 400, "cors_not_allowed", "Cross-origin request refused", *words)
        assert "access-control-allow-origin" not in response.headers or headers["Origin"] == "https://news.example"
        assert "Origin" in response.headers.get("vary", "")


def test_widget_files_and_docs_are_served(index_dir: Path):
    with serve(index_dir, max_query_chars=77) as client:
        js = client.get("/widget.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'widget.js" defer' in page.text  # src="widget.js" or, since main's d4dfb04, "/widget.js"
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text and "https://" not in docs.text  # served offline
        assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert_error(client.get("/docs/assets/index.html"), 404, "not_found")  # the vendor's demo page
        schema = client.get("/openapi.json").json()
        assert {"/search", "/ask", "/articles/{article_id}", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
        q = next(p for p in schema["paths"]["/search"]["get"]["parameters"] if p["name"] == "q")
        assert q["schema"]["maxLength"] == 77
        assert schema["paths"]["/search"]["get"]["responses"]["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorOut"
        }


# ---- settings and the serve command ---------------------------------------------------------------


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("NEWSDESK_INDEX_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSDESK_PORT", "9123")
    monkeypatch.setenv("NEWSDESK_CORS_ORIGINS", "https://a.example, http://localhost:3000")
    settings = Settings()
    assert settings.index_dir == tmp_path and settings.port == 9123
    assert settings.cors_origins == ["https://a.example", "http://localhost:3000"]
    assert Settings(cors_origins=[]).cors_origins == []
    with pytest.raises(ValueError, match="https://example.org"):
        Settings(cors_origins=["news.example"])


def test_serve_without_an_index_says_how_to_build_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["serve", "--index-dir", str(tmp_path / "none"), "--port", "8123"]) == 2
    err = capsys.readouterr().err
    assert f"newsdesk index corpus/ --index-dir {tmp_path / 'none'}" in err and "Traceback" not in err


def test_serve_refuses_an_index_from_another_model(index_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["serve", "--index-dir", str(index_dir)]) == 2
    assert "Rebuild the index" in capsys.readouterr().err


def test_serve_rejects_bad_port_and_settings(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "70000"])
    assert exit_info.value.code == 2 and "between 1 and 65535" in capsys.readouterr().err
    monkeypatch.setenv("NEWSDESK_MAX_K", "0")
    assert main(["serve", "--index-dir", str(tmp_path)]) == 2
    assert "max_k" in capsys.readouterr().err


def test_serve_on_a_taken_port_or_unknown_host_fails_before_loading(tmp_path: Path, monkeypatch, capsys):
    import socket

    import api.cli
    from indexer.corpus import load_corpus
    from tests.conftest import SEED_CORPUS

    build_index(load_corpus(SEED_CORPUS)[0], tmp_path, FakeEmbedder(), progress=False)
    monkeypatch.setattr(api.cli, "_embedder", lambda threads, micro_batch: FakeEmbedder())
    monkeypatch.setattr(api.cli, "check_index", lambda root, embedder: None)
    monkeypatch.setattr("api.reload.load_checked", lambda *a: pytest.fail("loaded although it cannot listen"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--index-dir", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("newsdesk: error: ") and f"Port {port} on 127.0.0.1 is already in use" in err
    assert main(["serve", "--index-dir", str(tmp_path), "--host", "no-such-host.invalid"]) == 2
    assert "Cannot listen on no-such-host.invalid" in capsys.readouterr().err
    monkeypatch.setenv("NEWSDESK_INDEX_DIR", "")
    assert Settings().index_dir == Path(".newsdesk/index")  # empty: the default, not the current directory


def test_service_url():
    assert service_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert service_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert service_url("::1", 8000) == "http://[::1]:8000/"
