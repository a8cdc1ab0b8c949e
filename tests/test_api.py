"""The HTTP API through FastAPI's TestClient: search, ask and articles, and every bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.query_encoding import is_utf8_query
from api.schemas import QUERY_TEXT
from api.settings import Settings
from indexer.build import build_index
from indexer.corpus import Article
from indexer.embedding import FakeEmbedder
from indexer.search import text_problem
from tests.conftest import DAIMLER, XIAOMI_HT

MAX_Q = 60
MAX_K = 20


@pytest.fixture
def client(index_dir: Path):
    settings = Settings(index_dir=index_dir, max_query_chars=MAX_Q, max_k=MAX_K)
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as test_client:
        yield test_client


def assert_error(response, status: int, code: str, *words: str) -> str:
    """The response is the one error shape with this status and code; its message has `words`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    for word in words:
        assert word in message, (word, message)
    assert "Traceback" not in message
    return message


# ---- search ---------------------------------------------------------------------------------------


def test_search_get_returns_cited_passages(client: TestClient):
    response = client.get("/search", params={"q": "Daimler Denza BYD", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"query", "mode", "took_ms", "hits"}
    assert body["query"] == "Daimler Denza BYD" and body["mode"] == "hybrid" and body["took_ms"] >= 0
    assert 1 <= len(body["hits"]) <= 3
    assert [h["rank"] for h in body["hits"]] == list(range(1, len(body["hits"]) + 1))
    top = body["hits"][0]
    assert set(top) == {"rank", "score", "chunk_id", "text", "citation", "highlights"}
    assert set(top["citation"]) == {"article_id", "title", "source", "date", "url", "start", "end"}
    assert top["citation"]["article_id"] == DAIMLER
    article = client.get(f"/articles/{DAIMLER}").json()
    c = top["citation"]
    assert article["text"][c["start"] : c["end"]] == top["text"]
    assert top["highlights"], "query terms occur in the passage"
    for span in top["highlights"]:
        assert c["start"] <= span["start"] < span["end"] <= c["end"]
        assert article["text"][span["start"] : span["end"]].lower() in {"daimler", "denza", "byd"}


def test_search_post_equals_get(client: TestClient):
    params = {"q": "Xiaomi electric vehicle partner", "k": 4, "mode": "lexical"}
    got = client.get("/search", params=params).json()
    posted = client.post("/search", json=params).json()
    assert [h["chunk_id"] for h in got["hits"]] == [h["chunk_id"] for h in posted["hits"]]
    assert posted["mode"] == "lexical"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_search_modes(client: TestClient, mode: str):
    body = client.get("/search", params={"q": "Xiaomi cars", "k": 2, "mode": mode}).json()
    assert body["mode"] == mode and 1 <= len(body["hits"]) <= 2


def test_search_filters_by_source_and_date(client: TestClient):
    by_source = client.get("/search", params={"q": "cars", "k": MAX_K, "source": "bloomberg"}).json()
    assert by_source["hits"] and {h["citation"]["source"] for h in by_source["hits"]} == {"Bloomberg"}
    recent = client.post("/search", json={"q": "cars", "k": MAX_K, "date_from": "2022-01-01"}).json()
    assert recent["hits"] and {h["citation"]["article_id"] for h in recent["hits"]} == {XIAOMI_HT}
    none = client.get("/search", params={"q": "cars", "date_from": "2030-01-01", "date_to": "2030-12-31"}).json()
    assert none["hits"] == []


def test_non_ascii_queries(client: TestClient):
    chinese = client.get("/search", params={"q": "比亞迪", "mode": "lexical", "k": 1}).json()
    assert chinese["query"] == "比亞迪"
    assert chinese["hits"][0]["citation"]["article_id"] == DAIMLER  # the article that names BYD as 比亞迪
    emoji = client.post("/search", json={"q": "🚗⚡ électrique 小米", "k": 2})
    assert emoji.status_code == 200 and emoji.json()["query"] == "🚗⚡ électrique 小米"
    only_emoji = client.get("/search", params={"q": "🚗", "mode": "lexical"})
    assert only_emoji.status_code == 200 and only_emoji.json()["hits"] == []


# ---- bad search input: GET and POST say the same thing -------------------------------------------

BAD_SEARCH = [
    ({"q": ""}, ("q",)),
    ({"q": "   \t "}, ("q", "empty")),
    ({"q": "x" * (MAX_Q + 1)}, ("q", str(MAX_Q), "characters")),
    ({"q": "cars", "k": 0}, ("k", f"1 to {MAX_K}")),
    ({"q": "cars", "k": MAX_K + 1}, ("k", f"1 to {MAX_K}")),
    ({"q": "cars", "k": "ten"}, ("k", f"1 to {MAX_K}")),
    ({"q": "cars", "mode": "semantic"}, ("mode", "hybrid, dense, lexical", "semantic")),
    ({"q": "cars", "date_from": "2020-13-01"}, ("date_from", "YYYY-MM-DD")),
    ({"q": "cars", "date_to": "01/02/2020"}, ("date_to", "YYYY-MM-DD")),
    ({"q": "cars", "date_from": "1700000000"}, ("date_from", "YYYY-MM-DD")),
    ({"q": "cars", "date_from": "2022-02-01", "date_to": "2022-01-01"}, ("date_from", "date_to")),
    ({"q": "cars", "source": "   "}, ("source", "empty")),
    ({"k": 3}, ("q", "required")),
]
# In a JSON body "" is a value, and not a source; in a query string it is a field left blank.
BAD_SEARCH_BODY = [
    ({"q": "cars", "source": ""}, ("source",)),
    ({"q": "cars", "date_from": ""}, ("date_from", "YYYY-MM-DD")),
]


@pytest.mark.parametrize(("params", "words"), BAD_SEARCH)
def test_bad_search_get(client: TestClient, params: dict, words: tuple[str, ...]):
    assert_error(client.get("/search", params=params), 422, "invalid_parameter", *words)


@pytest.mark.parametrize(("params", "words"), BAD_SEARCH + BAD_SEARCH_BODY)
def test_bad_search_post(client: TestClient, params: dict, words: tuple[str, ...]):
    assert_error(client.post("/search", json=params), 422, "invalid_parameter", *words)


def test_empty_filters_in_a_query_string_are_no_filters(client: TestClient):
    """What an HTML form sends for fields left blank: source=&date_from=&date_to=."""
    unfiltered = client.get("/search", params={"q": "cars", "k": MAX_K}).json()["hits"]
    blank = client.get("/search?q=cars&k=20&source=&date_from=&date_to=")
    assert blank.status_code == 200, blank.text
    assert [h["chunk_id"] for h in blank.json()["hits"]] == [h["chunk_id"] for h in unfiltered]
    by_source = client.get("/search?q=cars&k=20&source=bloomberg&date_from=&date_to=").json()["hits"]
    assert by_source and {h["citation"]["source"] for h in by_source} == {"Bloomberg"}
    # Blank is not whitespace: a source of spaces is still refused.
    assert_error(client.get("/search?q=cars&source=+"), 422, "invalid_parameter", "source", "empty")
    spec = client.get("/openapi.json").json()["paths"]["/search"]["get"]
    params = {p["name"]: p["schema"] for p in spec["parameters"]}
    for name in ("source", "date_from", "date_to"):
        assert {"type": "string", "maxLength": 0} in params[name]["anyOf"], name  # the schema says so too


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("q=cars&date_form=2024-01-01", ("'date_form'", "did you mean date_from", "q, k, mode, source, date_from")),
        ("q=cars&from=2024-01-01", ("'from'", "date_from")),
        ("query=cars", ("'query'", "q, k, mode")),
        ("q=cars&a=1&b=", ("parameters 'a', 'b'",)),
    ],
)
def test_unknown_query_parameters_are_refused(client: TestClient, query: str, words: tuple[str, ...]):
    assert_error(client.get(f"/search?{query}"), 422, "invalid_parameter", "Unknown query parameter", *words)


def test_a_query_parameter_given_twice_is_refused(client: TestClient):
    assert_error(client.get("/search?q=cars&q=batteries"), 422, "invalid_parameter", "q is given more than once")
    assert_error(client.get(f"/articles/{DAIMLER}?start=0&end=5&end=9"), 422, "invalid_parameter", "end is given")
    assert client.get("/search?q=cars&k=2").status_code == 200
    assert_error(client.get("/search?q=cars&q=b&k=1&k=2"), 422, "invalid_parameter", "q, k are each given")


def test_a_cache_buster_parameter_is_let_through(client: TestClient):
    assert client.get("/search?q=cars&_=1700000000000").status_code == 200
    assert client.get(f"/articles/{DAIMLER}?_=1700000000000").status_code == 200


def test_unknown_article_query_parameters_are_refused(client: TestClient):
    response = client.get(f"/articles/{DAIMLER}?strat=3&end=10")
    assert_error(response, 422, "invalid_parameter", "'strat'", "did you mean start", "start, end, context")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"q": "cars", "k": true}', ("k", "true")),
        (b'{"q": "cars", "k": 2.5}', ("k", "2.5")),
        (b'{"q": "cars", "k": 1e400}', ("k",)),
        (b'{"q": null}', ("q",)),
        (b'{"q": ["cars"]}', ("q",)),
        (b'{"q": "\\ud800"}', ("q",)),
        (b'{"q": "cars", "date_from": 20200101}', ("date_from", "YYYY-MM-DD")),
    ],
)
def test_wrongly_typed_json_fields(client: TestClient, body: bytes, words: tuple[str, ...]):
    response = client.post("/search", content=body, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_parameter", *words)


@pytest.mark.parametrize(
    ("field", "value", "code_point"),
    [("q", "Dai\x00mler", "U+0000"), ("q", "cars\x1b[31m", "U+001B"), ("q", "cars\x9b31m", "U+009B"),
     ("source", "Bloom\x7fberg", "U+007F")],
)
def test_control_characters_in_a_query_are_refused(client: TestClient, field: str, value: str, code_point: str):
    params = {"q": "cars", field: value}
    for response in (client.get("/search", params=params), client.post("/search", json=params)):
        assert_error(response, 422, "invalid_parameter", field, code_point, "control character")
    asked = client.post("/ask", json={"question": "Who?\x00"})
    assert_error(asked, 422, "invalid_parameter", "question", "U+0000")
    # Tabs and line breaks are text.
    assert client.get("/search", params={"q": "Daimler\tDenza\nBYD"}).status_code == 200


def test_unpaired_surrogate_is_named(client: TestClient):
    body = b'{"q": "\\ud800 Daimler"}'
    response = client.post("/search", content=body, headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_parameter", "q", "U+D800", "surrogate")


def test_query_string_that_is_not_utf8(client: TestClient):
    for query in ("q=Daimler%ff", "q=%ed%a0%80", "q=cars&source=%c3"):
        assert_error(client.get(f"/search?{query}"), 400, "bad_request", "UTF-8")
    assert client.get("/search?q=%E6%AF%94%E4%BA%9E%E8%BF%AA").status_code == 200  # 比亞迪, percent-encoded
    # Everything else a query string may hold still passes: '+', an escaped '+', empty values, bare keys.
    for query in ("q=Daimler+Denza", "q=C%2B%2B+cars", "q=cars&source=", "q=" + "a" * 50):
        assert client.get(f"/search?{query}").status_code == 200, query
    assert client.get("/search?q=cars&flag").status_code == 422  # a bare unknown key: refused as unknown


@pytest.mark.parametrize(
    ("raw", "utf8"),
    [(b"", True), (b"q=Daimler+Denza", True), (b"q=%E6%AF%94", True), (b"q=C%2B%2B&flag&x=", True),
     (b"q=%ff", False), (b"q=\xff", False), (b"q=ok&source=%c3", False), (b"%c3=x", False)],
)
def test_query_string_check(raw: bytes, utf8: bool):
    assert is_utf8_query(raw) is utf8


def test_query_pattern_agrees_with_the_text_check():
    """The schema's pattern (what clients see) and the server's check refuse the same queries."""
    pattern = re.compile(QUERY_TEXT)
    samples = ["cars", "  cars  ", "\tcars\n", "\u3000比亞迪", "🚗", "a\x85b", "\xa0x", "", "   ", "\t\n",
               "ca\x00rs", "cars\x1b", "\x7f", "x\x9b", "\x85", "\u2028"]
    for text in samples:
        accepted = text_problem(text, "q") is None and bool(text.strip())
        assert bool(pattern.search(text)) is accepted, repr(text)


def test_k_as_a_json_string_is_refused(client: TestClient):
    response = client.post("/search", json={"q": "cars", "k": "5"})
    assert_error(response, 422, "invalid_parameter", "k", "JSON string", "without quotes")
    assert client.post("/search", json={"q": "cars", "k": 5.0}).status_code == 200  # JSON Schema's integer


def test_body_without_a_content_type(client: TestClient):
    for path, body in (("/search", b'{"q": "Denza"}'), ("/ask", b'{"question": "Who?"}')):
        response = client.post(path, content=body)
        assert "content-type" not in response.request.headers
        assert_error(response, 415, "unsupported_media_type", "Content-Type: application/json")


def test_query_limit_counts_characters_not_bytes(client: TestClient):
    at_limit = "比" * MAX_Q  # 3 bytes each in UTF-8, still MAX_Q characters
    assert client.get("/search", params={"q": at_limit}).status_code == 200
    assert_error(client.get("/search", params={"q": at_limit + "比"}), 422, "invalid_parameter", str(MAX_Q))


@pytest.mark.parametrize("path", ["/search", "/ask"])
def test_malformed_and_misshapen_bodies(client: TestClient, path: str):
    json_headers = {"content-type": "application/json"}
    assert_error(client.post(path, content=b'{"q": "cars",', headers=json_headers), 400, "malformed_json", "JSON")
    assert_error(client.post(path, content="{'q': 'cars'}", headers=json_headers), 400, "malformed_json")
    assert_error(client.post(path, json=["cars"]), 422, "invalid_parameter", "JSON object")
    assert_error(client.post(path, json="cars"), 422, "invalid_parameter", "JSON object")
    assert_error(client.post(path), 422, "invalid_parameter", "body is required")
    assert_error(client.post(path, json={"qq": "cars", "question": "cars?"}), 422, "invalid_parameter", "qq")
    not_utf8 = b'{"q": "\xff\xfe cars", "question": "\xff?"}'
    assert_error(client.post(path, content=not_utf8, headers=json_headers), 400, "malformed_json", "UTF-8")
    too_deep = b"[" * 5000 + b"]" * 5000
    assert_error(client.post(path, content=too_deep, headers=json_headers), 400, "malformed_json")
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert_error(client.post(path, content=b"q=cars", headers=form), 415, "unsupported_media_type",
                 "application/json")


# ---- ask ------------------------------------------------------------------------------------------


def test_ask_returns_answer_with_citations(client: TestClient):
    response = client.post("/ask", json={"question": "Which company did Daimler team up with for Denza?", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert {"question", "answer", "answerable", "confidence", "citations", "passages"} <= set(body)
    assert body["question"] == "Which company did Daimler team up with for Denza?"
    assert isinstance(body["answerable"], bool) and 0.0 <= body["confidence"] <= 1.0
    assert 1 <= len(body["passages"]) <= 3
    for citation in body["citations"]:
        assert {"article_id", "title", "source", "date", "url", "start", "end", "quote"} <= set(citation)
        text = client.get(f"/articles/{citation['article_id']}").json()["text"]
        assert text[citation["start"] : citation["end"]] == citation["quote"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"question": ""}, ("question",)),
        ({"question": " \n "}, ("question", "empty")),
        ({"question": "why? " * MAX_Q}, ("question", str(MAX_Q))),
        ({"question": "why?", "k": 0}, ("k", f"1 to {MAX_K}")),
        ({"question": "why?", "k": 1000}, ("k", f"1 to {MAX_K}")),
        ({"k": 3}, ("question", "required")),
        ({"question": "why?", "mode": "dense"}, ("mode",)),
    ],
)
def test_bad_ask(client: TestClient, body: dict, words: tuple[str, ...]):
    assert_error(client.post("/ask", json=body), 422, "invalid_parameter", *words)


# ---- articles -------------------------------------------------------------------------------------


def test_article_by_id(client: TestClient):
    body = client.get(f"/articles/{DAIMLER}").json()
    assert {k: body[k] for k in ("article_id", "source", "date")} == {
        "article_id": DAIMLER, "source": "Bloomberg", "date": "2018-08-07"
    }
    assert body["title"].startswith("Daimler") and "Denza" in body["text"] and body["span"] is None


def test_article_span_with_context(client: TestClient):
    text = client.get(f"/articles/{DAIMLER}").json()["text"]
    start = text.index("Denza")
    end = start + len("Denza")
    span = client.get(f"/articles/{DAIMLER}", params={"start": start, "end": end, "context": 40}).json()["span"]
    assert span["quote"] == "Denza" == text[span["start"] : span["end"]]
    assert span["context"] == text[span["context_start"] : span["context_end"]]
    assert span["context_start"] <= start and end <= span["context_end"]
    assert start - 40 <= span["context_start"] and span["context_end"] <= end + 40
    assert span["context_start"] < start and span["context_end"] > end, "some context on both sides"
    # cut at word boundaries, not inside a word
    assert span["context_start"] == 0 or text[span["context_start"] - 1].isspace()
    assert span["context_end"] == len(text) or text[span["context_end"]].isspace()
    whole = client.get(f"/articles/{DAIMLER}", params={"start": 0, "end": len(text)}).json()["span"]
    assert whole["quote"] == text == whole["context"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"start": 5}, ("start", "end", "both")),
        ({"end": 5}, ("start", "end", "both")),
        ({"start": 9, "end": 9}, ("start", "end")),
        ({"start": 10, "end": 3}, ("start", "end")),
        ({"start": -1, "end": 3}, ("start",)),
        ({"start": 0, "end": 10**7}, ("end", "characters")),
        ({"start": "a", "end": 3}, ("start",)),
        ({"start": 0, "end": 3, "context": 10**6}, ("context", "10000")),
    ],
)
def test_bad_article_span(client: TestClient, params: dict, words: tuple[str, ...]):
    assert_error(client.get(f"/articles/{DAIMLER}", params=params), 422, "invalid_parameter", *words)


def test_unknown_article(client: TestClient):
    assert_error(client.get("/articles/no-such-article"), 404, "article_not_found", "no-such-article")
    assert_error(client.get("/articles/a/b/c"), 404, "article_not_found", "'a/b/c'")


def test_article_ids_with_slashes(tmp_path: Path):
    root = tmp_path / "index"
    articles = [
        Article("world/asia/2024-01-02-byd", "BYD outsells Tesla", "BYD outsold Tesla in the last quarter.", "Wire"),
        Article("tech/xiaomi su7", "Xiaomi SU7", "Xiaomi delivered its first SU7 electric sedans.", "Wire"),
    ]
    build_index(articles, root, FakeEmbedder(), progress=False)
    with TestClient(create_app(Settings(index_dir=root), embedder=FakeEmbedder())) as client:
        hit = client.get("/search", params={"q": "BYD Tesla", "k": 1}).json()["hits"][0]
        assert hit["citation"]["article_id"] == "world/asia/2024-01-02-byd"
        for path in ("/articles/world/asia/2024-01-02-byd", "/articles/world%2Fasia%2F2024-01-02-byd"):
            body = client.get(path).json()
            assert body["article_id"] == "world/asia/2024-01-02-byd" and body["title"] == "BYD outsells Tesla"
        assert client.get("/articles/tech/xiaomi%20su7").json()["title"] == "Xiaomi SU7"
        assert_error(client.get("/articles/world/asia"), 404, "article_not_found")
