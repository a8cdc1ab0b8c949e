"""POST and DELETE /articles: API keys, validation, re-indexing, serialised writes, read keys."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.writes import ID_PATTERN, id_problem
from indexer.embedding import FakeEmbedder
from indexer.publish import build_lock
from tests.conftest import DAIMLER, XIAOMI_HT, HeldEmbedder
from tests.test_api import assert_error

KEY = "write-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdef"
WRITE = {"X-API-Key": KEY}
FERRY = {
    "article_id": "wire/2024/solar-ferry", "title": "Solar ferry crosses the fjord",
    "text": "A solar ferry carried its first passengers across the Oslo fjord on Monday.\r\nTickets sold out.",
    "source": "Wire", "date": "2024-05-06", "url": "https://news.example/solar-ferry",
}


def serve(index_dir: Path, embedder=None, **settings) -> TestClient:
    settings.setdefault("reload_interval", 0)
    app = create_app(Settings(index_dir=index_dir, **settings), embedder=embedder or FakeEmbedder())
    return TestClient(app, raise_server_exceptions=False)


def top_article(client: TestClient, q: str) -> str | None:
    hits = client.get("/search", params={"q": q, "k": 1, "mode": "lexical"}).json()["hits"]
    return hits[0]["citation"]["article_id"] if hits else None


# ---- keys -----------------------------------------------------------------------------------------


def test_writes_are_disabled_without_a_configured_key(index_dir: Path):
    with serve(index_dir) as client:
        served = client.get("/readyz").json()["index_id"]
        assert_error(client.post("/articles", json={"articles": [FERRY]}, headers=WRITE), 403, "writes_disabled",
                     "NEWSDESK_API_KEY")
        assert_error(client.delete(f"/articles/{DAIMLER}", headers=WRITE), 403, "writes_disabled")
        assert client.get("/readyz").json()["index_id"] == served
        assert client.get("/search", params={"q": "cars"}).status_code == 200  # reads stay open


@pytest.mark.parametrize("headers", [
    {},
    {"X-API-Key": "wrong-key-0123456789abcdef"},
    {"X-API-Key": KEY[:-1]},
    {"X-API-Key": KEY + "x"},
    {"Authorization": f"Basic {KEY}"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {KEY.upper()}"},
    {"X-API-Key": ""},
])
def test_writes_without_the_right_key_get_401(index_dir: Path, headers: dict[str, str]):
    with serve(index_dir, api_key=KEY) as client:
        served = client.get("/readyz").json()["index_id"]
        for response in (client.post("/articles", json={"articles": [FERRY]}, headers=headers),
                         client.delete(f"/articles/{DAIMLER}", headers=headers)):
            assert_error(response, 401, "unauthorized", "API key")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert KEY not in response.text
        assert client.get("/readyz").json()["index_id"] == served
        assert client.get(f"/articles/{DAIMLER}").status_code == 200


def test_key_is_checked_before_the_body(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        assert_error(client.post("/articles", json={"nonsense": 1}), 401, "unauthorized")


MALFORMED = {"content": b"{bad", "headers": {"content-type": "application/json"}}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-0123456789abcdef"}, {"Authorization": "Basic x"}])
def test_key_is_checked_before_the_body_is_parsed(index_dir: Path, headers: dict[str, str]):
    with serve(index_dir, api_key=KEY, read_api_key=READ_KEY, max_body_bytes=1024, max_write_bytes=1024) as client:
        for method, path in (("POST", "/articles"), ("POST", "/search"), ("POST", "/ask")):
            sent = {**MALFORMED["headers"], **headers}
            response = client.request(method, path, content=MALFORMED["content"], headers=sent)
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["connection"] == "close"  # the unread body is not drained
            # Over the size limit too: the key comes first.
            assert_error(client.post(path, content=b"x" * 5000, headers=sent), 401, "unauthorized")
        # With the key, the body is read and judged as before.
        assert_error(client.post("/articles", headers={**MALFORMED["headers"], **WRITE}, content=b"{bad"), 400,
                     "malformed_json")
        assert_error(client.post("/search", headers={**MALFORMED["headers"], "X-API-Key": READ_KEY},
                                 content=b"{bad"), 400, "malformed_json")


def test_writes_disabled_is_said_before_the_body_is_parsed(index_dir: Path):
    with serve(index_dir) as client:
        assert_error(client.post("/articles", **MALFORMED), 403, "writes_disabled", "NEWSDESK_API_KEY")
        assert_error(client.post("/articles", content=b"x" * 3_000_000, headers=MALFORMED["headers"]), 403,
                     "writes_disabled")
        assert client.post("/search", **MALFORMED).status_code == 400  # reads are open: their body is judged


def test_a_request_without_the_key_has_no_byte_of_its_body_read(index_dir: Path):
    app = create_app(Settings(index_dir=index_dir, api_key=KEY, reload_interval=0), embedder=FakeEmbedder())
    reads = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b'{"articles": []}', "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            headers = [(b"content-type", b"application/json"), (b"content-length", b"16"), (b"x-api-key", b"nope")]
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/articles", "raw_path": b"/articles", "root_path": "",
                     "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "server": ("test", 80)}
            await app(scope, receive, send)

    asyncio.run(scenario())
    assert sent[0]["status"] == 401 and reads == 0


@pytest.mark.parametrize("headers", [
    {"Authorization": f"bearer {READ_KEY}"},  # the scheme is case-insensitive
    {"Authorization": f"Bearer   {READ_KEY}  "},
    {"X-API-Key": "", "Authorization": f"Bearer {READ_KEY}"},  # an empty X-API-Key is no key
    {"X-API-Key": READ_KEY, "Authorization": "Basic x"},
])
def test_keys_are_read_alike_before_and_after_the_body(index_dir: Path, headers: dict[str, str]):
    with serve(index_dir, read_api_key=READ_KEY) as client:
        assert client.post("/search", json={"q": "cars"}, headers=headers).status_code == 200


def test_settings_refuse_short_keys():
    with pytest.raises(ValueError, match="at least 16"):
        Settings(api_key="short")
    assert Settings(api_key="").api_key is None  # NEWSDESK_API_KEY= means no key


# ---- add, replace, delete -------------------------------------------------------------------------


def test_post_adds_a_searchable_article_with_exact_citations(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        before = client.get("/readyz").json()
        response = client.post("/articles", json={"articles": [FERRY]}, headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["added"] == [FERRY["article_id"]] and body["replaced"] == [] and body["deleted"] == []
        assert body["text_normalised"] == [FERRY["article_id"]]  # its \r\n became \n: offsets are the stored text's
        assert body["articles"] == before["articles"] + 1 and body["index_id"] != before["index_id"]
        assert client.get("/readyz").json()["index_id"] == body["index_id"]  # served when the response comes
        stored = client.get(f"/articles/{FERRY['article_id']}").json()
        assert stored["text"] == FERRY["text"].replace("\r\n", "\n")
        assert (stored["title"], stored["source"], stored["date"], stored["url"]) == (
            FERRY["title"], "Wire", "2024-05-06", FERRY["url"])
        hit = client.get("/search", params={"q": "solar ferry fjord", "k": 1}).json()["hits"][0]
        assert hit["citation"]["article_id"] == FERRY["article_id"]
        assert stored["text"][hit["citation"]["start"]:hit["citation"]["end"]] == hit["text"]
        assert top_article(client, "Denza") == DAIMLER  # the old articles are still there


def test_post_replaces_an_existing_article(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        articles = client.get("/readyz").json()["articles"]
        changed = {"article_id": DAIMLER, "title": "Daimler update", "text": "Daimler now builds trams in Ulm."}
        body = client.post("/articles", json={"articles": [changed, FERRY]}, headers=WRITE).json()
        assert body["replaced"] == [DAIMLER] and body["added"] == [FERRY["article_id"]]
        assert body["text_normalised"] == [FERRY["article_id"]]  # the other text is stored as sent
        assert body["articles"] == articles + 1
        assert client.get(f"/articles/{DAIMLER}").json()["text"] == "Daimler now builds trams in Ulm."
        assert top_article(client, "Denza") is None and top_article(client, "trams Ulm") == DAIMLER


def test_delete_removes_an_article_from_results(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        assert top_article(client, "Beijing Automotive BAIC Xiaomi") == XIAOMI_HT
        body = client.delete(f"/articles/{XIAOMI_HT}", headers=WRITE).json()
        assert body["deleted"] == [XIAOMI_HT] and body["articles"] == 2 and body["text_normalised"] == []
        assert_error(client.get(f"/articles/{XIAOMI_HT}"), 404, "article_not_found")
        assert all(h["citation"]["article_id"] != XIAOMI_HT
                   for h in client.get("/search", params={"q": "Xiaomi Beijing", "k": 20}).json()["hits"])
        served = client.get("/readyz").json()["index_id"]
        assert_error(client.delete(f"/articles/{XIAOMI_HT}", headers=WRITE), 404, "article_not_found", XIAOMI_HT)
        assert client.get("/readyz").json()["index_id"] == served  # nothing was rebuilt


def test_ids_with_slashes_round_trip(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        client.post("/articles", json={"articles": [FERRY]}, headers=WRITE)
        assert client.get(f"/articles/{FERRY['article_id']}").status_code == 200
        assert client.delete(f"/articles/{FERRY['article_id']}", headers=WRITE).json()["deleted"] == [
            FERRY["article_id"]]


def test_the_last_article_cannot_be_deleted(tmp_path: Path):
    root = tmp_path / "index"
    client_settings = {"api_key": KEY}
    with serve(root, **client_settings) as client:
        # No index yet: the first write starts one.
        assert client.get("/readyz").status_code == 503
        body = client.post("/articles", json={"articles": [FERRY]}, headers=WRITE).json()
        assert body["articles"] == 1 and client.get("/readyz").json()["index_id"] == body["index_id"]
        assert_error(client.delete(f"/articles/{FERRY['article_id']}", headers=WRITE), 409, "index_would_be_empty")


def test_writes_are_published_for_other_processes_and_restarts(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        index_id = client.post("/articles", json={"articles": [FERRY]}, headers=WRITE).json()["index_id"]
    assert (index_dir / "CURRENT").read_text().strip() == index_id
    with serve(index_dir) as restarted:
        assert restarted.get("/readyz").json()["index_id"] == index_id
        assert top_article(restarted, "solar ferry") == FERRY["article_id"]


def test_a_build_running_elsewhere_gets_503_with_retry_after(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client, build_lock(index_dir):
        response = client.post("/articles", json={"articles": [FERRY]}, headers=WRITE)
        assert_error(response, 503, "index_busy", "Another build")
        assert int(response.headers["retry-after"]) > 0


# ---- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ({}, ["articles", "required"]),
    ({"articles": []}, ["articles"]),
    ({"articles": [FERRY, FERRY]}, ["appears twice"]),
    ({"articles": [FERRY], "extra": 1}, ["Unknown field 'extra'"]),
    ({"articles": [{**FERRY, "byline": "x"}]}, ["byline"]),
    ({"articles": [{**FERRY, "text": "   "}]}, ["text"]),
    ({"articles": [{**FERRY, "text": "x" * 301}]}, ["text"]),
    ({"articles": [{k: v for k, v in FERRY.items() if k != "title"}]}, ["title", "required"]),
    ({"articles": [{**FERRY, "article_id": "has space"}]}, ["article_id"]),
    ({"articles": [{**FERRY, "article_id": "/leading"}]}, ["article_id"]),
    ({"articles": [{**FERRY, "article_id": "x" * 301}]}, ["article_id"]),
    ({"articles": [{**FERRY, "date": "06/05/2024"}]}, ["articles[0].date", "YYYY-MM-DD"]),
    ({"articles": [FERRY, {**FERRY, "article_id": "b", "date": "2024-02-30"}]}, ["articles[1].date", "calendar"]),
    ({"articles": [{**FERRY, "url": "javascript:alert(1)"}]}, ["url"]),
    ({"articles": [{**FERRY, "source": 5}]}, ["source"]),
    ({"articles": [{**FERRY, "source": "Wire\x00"}]}, ["articles[0].source", "U+0000"]),
    *[({"articles": [{**FERRY, field: f"Ferry{char}news"}]}, [f"articles[0].{field}", code, "control character"])
      for field in ("title", "text") for char, code in (("\x00", "U+0000"), ("\x1f", "U+001F"), ("\x7f", "U+007F"),
                                                         ("\x9b", "U+009B"))],
    *[({"articles": [{**FERRY, "article_id": f"a{char}b"}]}, ["article_id", code, "space"])
      for char, code in (("\xa0", "U+00A0"), ("\u2028", "U+2028"), ("\u3000", "U+3000"), ("\x85", "U+0085"))],
    *[({"articles": [{**FERRY, "article_id": bad}]}, ["article_id", "'..' segment", "could not be opened"])
      for bad in (".", "..", "a/../b", "a/./b", "./a", "wire/..", "%2e%2E", "a/.%2e/b", "a\\..\\b")],
    ({"articles": [dict(FERRY, article_id=f"a{n}") for n in range(4)]}, ["articles"]),
    ({"articles": "not a list"}, ["articles"]),
])
def test_bad_articles_are_refused_with_the_field(index_dir: Path, body: dict, words: list[str]):
    with serve(index_dir, api_key=KEY, max_article_chars=300, max_articles_per_write=3) as client:
        served = client.get("/readyz").json()["index_id"]
        assert_error(client.post("/articles", json=body, headers=WRITE), 422, "invalid_parameter", *words)
        assert client.get("/readyz").json()["index_id"] == served


def test_unpaired_surrogates_in_articles_are_named(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        for field in ("title", "text", "article_id"):
            body = json.dumps({"articles": [{**FERRY, field: "Ferry \ud800 news"}]})  # escaped: JSON's "\ud800"
            response = client.post("/articles", content=body, headers={**WRITE, "content-type": "application/json"})
            assert_error(response, 422, "invalid_parameter", f"articles[0].{field}", "U+D800", "surrogate")


def test_id_pattern_agrees_with_the_id_check():
    """The schema's pattern (what clients and the fuzzer see) and the server's check refuse the same ids."""
    pattern = re.compile(ID_PATTERN)
    samples = ["wire/2024/ferry", "a.b", "...", ".hidden", "a/.b/c", "v1.2/x", "%2e%2e%2e", "a..b", "a//b",
               ".", "..", "a/../b", "a/./b", "./a", "a/.", "%2E", ".%2e", "a\\..\\b", "a b", "a\xa0b", "a\u2028b",
               "a\x00b", "a\x85b", "a\x9bb", "\u3000", "/a", "a/", "a\tb"]
    for article_id in samples:
        assert (pattern.search(article_id) is not None) is (id_problem(article_id) is None and
                                                           article_id.strip("/") == article_id), repr(article_id)


def test_url_schemes_are_case_insensitive(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        article = {**FERRY, "url": "HTTPS://News.Example/Ferry"}
        assert client.post("/articles", json={"articles": [article]}, headers=WRITE).status_code == 200
        assert client.get(f"/articles/{FERRY['article_id']}").json()["url"] == "HTTPS://News.Example/Ferry"
        for bad in ("javascript:alert(1)", "ftp://x.example/", "HTTPS//x.example", "https://x.example/a\n"):
            response = client.post("/articles", json={"articles": [{**FERRY, "url": bad}]}, headers=WRITE)
            assert_error(response, 422, "invalid_parameter", "articles[0].url", "http://")


def test_write_bodies_have_their_own_size_limit(index_dir: Path):
    with serve(index_dir, api_key=KEY, max_body_bytes=1024, max_write_bytes=4096) as client:
        article = {**FERRY, "text": "Ferry news. " * 200}  # ~2.4 kB: over the query limit, under the write limit
        assert client.post("/articles", json={"articles": [article]}, headers=WRITE).status_code == 200
        too_big = {**FERRY, "text": "Ferry news. " * 400}
        assert_error(client.post("/articles", json={"articles": [too_big]}, headers=WRITE), 413,
                     "payload_too_large", "4096", "NEWSDESK_MAX_WRITE_BYTES")
        assert_error(client.post("/search", json={"q": "x" * 2000}), 413, "payload_too_large", "1024")


def test_the_write_size_limit_holds_under_a_mount(index_dir: Path):
    """Mounted at /api (a larger app, or a proxy's prefix), POST /api/articles keeps its own limit."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    inner = create_app(Settings(index_dir=index_dir, api_key=KEY, max_body_bytes=1024, max_write_bytes=4096,
                                reload_interval=0), embedder=FakeEmbedder())
    with TestClient(Starlette(routes=[Mount("/api", app=inner)]), raise_server_exceptions=False) as client:
        article = {**FERRY, "text": "Ferry news. " * 200}  # ~2.4 kB: over the query limit, under the write limit
        assert client.post("/api/articles", json={"articles": [article]}, headers=WRITE).status_code == 200


# ---- serialised writes ----------------------------------------------------------------------------


def _article(n: int, word: str = "tram") -> dict[str, str]:
    return {"article_id": f"city/{word}-{n}", "title": f"{word} line {n}", "text": f"The {word} line {n} opened."}


def test_concurrent_writes_are_serialised_and_none_is_lost(index_dir: Path):
    app = create_app(Settings(index_dir=index_dir, api_key=KEY, reload_interval=0), embedder=FakeEmbedder())

    async def scenario() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                posts = [client.post("/articles", json={"articles": [_article(n)]}, headers=WRITE) for n in range(4)]
                deletes = [client.delete(f"/articles/{XIAOMI_HT}", headers=WRITE)]
                return list(await asyncio.gather(*posts, *deletes))

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert len({r.json()["index_id"] for r in responses}) == 5  # one build per write, one at a time
    with serve(index_dir) as client:  # every change is in the final index: no write overwrote another
        ready = client.get("/readyz").json()
        assert ready["articles"] == 3 + 4 - 1
        for n in range(4):
            assert client.get(f"/articles/city/tram-{n}").status_code == 200


def test_writes_beyond_the_queue_get_503(index_dir: Path):
    from api.writes import MAX_QUEUED_WRITES

    embedder = HeldEmbedder("gate")
    app = create_app(Settings(index_dir=index_dir, api_key=KEY, reload_interval=0), embedder=embedder)

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                first = asyncio.create_task(
                    client.post("/articles", json={"articles": [_article(0, "gate")]}, headers=WRITE))
                assert await asyncio.to_thread(embedder.entered.wait, 10)  # the first build is running
                waiting = [asyncio.create_task(
                    client.post("/articles", json={"articles": [_article(n)]}, headers=WRITE))
                    for n in range(MAX_QUEUED_WRITES)]
                while app.state.writer._waiting < MAX_QUEUED_WRITES:
                    await asyncio.sleep(0.01)
                refused = await client.post("/articles", json={"articles": [_article(99)]}, headers=WRITE)
                search = await client.get("/search", params={"q": "Daimler"})  # reads go on meanwhile
                embedder.release.set()
                return [await first, *[await w for w in waiting]], refused, search

    done, refused, search = asyncio.run(scenario())
    assert [r.status_code for r in done] == [200] * (MAX_QUEUED_WRITES + 1)
    assert_error(refused, 503, "writes_busy", "retry")
    assert refused.headers["retry-after"] == "1"
    assert search.status_code == 200


# ---- read keys ------------------------------------------------------------------------------------


def test_a_read_key_protects_reads_but_not_operations(index_dir: Path):
    with serve(index_dir, api_key=KEY, read_api_key=READ_KEY) as client:
        for method, path, body in (("GET", "/search?q=cars", None), ("POST", "/search", {"q": "cars"}),
                                   ("POST", "/ask", {"question": "cars?"}), ("GET", f"/articles/{DAIMLER}", None)):
            assert_error(client.request(method, path, json=body), 401, "unauthorized", "Reading")
            assert_error(client.request(method, path, json=body, headers={"X-API-Key": "nope-" * 5}), 401,
                         "unauthorized")
            assert client.request(method, path, json=body, headers={"X-API-Key": READ_KEY}).status_code == 200
            assert client.request(method, path, json=body,
                                  headers={"Authorization": f"Bearer {KEY}"}).status_code == 200  # write key reads
        for path in ("/healthz", "/readyz", "/metrics", "/", "/widget.js", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        assert_error(client.post("/articles", json={"articles": [FERRY]}, headers={"X-API-Key": READ_KEY}), 401,
                     "unauthorized")
        schema = client.get("/openapi.json").json()
        assert "401" in schema["paths"]["/search"]["get"]["responses"]
        assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])


def test_reads_are_open_without_a_read_key(index_dir: Path):
    with serve(index_dir, api_key=KEY) as client:
        assert client.get("/search", params={"q": "cars"}).status_code == 200
        schema = client.get("/openapi.json").json()
        assert "401" not in schema["paths"]["/search"]["get"]["responses"]
        assert "401" in schema["paths"]["/articles"]["post"]["responses"]
