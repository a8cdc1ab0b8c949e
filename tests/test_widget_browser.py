"""The citation widget in real headless Chromium (Debian's /usr/bin/chromium via Playwright)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from api.settings import Settings
from indexer.build import build_index
from indexer.corpus import Article, load_corpus
from indexer.embedding import FakeEmbedder
from tests.conftest import DAIMLER, SEED_CORPUS

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
XSS_TEXT = (
    "Hostile markup test. <script>window.__pwned = 1</script> and "
    '<img src=x onerror="window.__pwned = 2"> should show as text, zipzap marker.'
)
# Characters outside the Basic Multilingual Plane are one character to the API, two UTF-16 units to JavaScript.
ASTRAL_TEXT = "Fans 🚗🚗🚗 cheered as the Zeppelin airship 𝔘 flew over the quokka meadow."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("widget") / "index"
    hostile = Article("hostile", "<b>Hostile</b> title", XSS_TEXT, "Test", "2024-01-01")
    astral = Article("astral", "Emoji 🚗 title", ASTRAL_TEXT, "Test", "2024-01-02")
    articles = load_corpus(SEED_CORPUS)[0] + [hostile, astral]
    embedder = FakeEmbedder()
    build_index(articles, root, embedder, progress=False)
    port = _free_port()
    app = create_app(Settings(index_dir=root), embedder=embedder)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: scripts/setup.sh installs it with apt"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def _widget(page):
    return page.locator("newsdesk-search")


def test_search_shows_ranked_results_and_opens_the_cited_span(server: str, page):
    page.goto(server + "/")
    box = page.get_by_label("Search the news articles")
    box.fill("Daimler Denza BYD")
    box.press("Enter")
    results = page.locator("newsdesk-search ol.results > li")
    results.first.wait_for()
    assert results.count() >= 3
    first = results.first
    assert "Daimler" in first.locator(".title").inner_text()
    assert "Bloomberg" in first.locator(".meta").inner_text() and "2018" in first.locator(".meta").inner_text()
    assert first.locator("mark").count() >= 1
    assert "?q=Daimler+Denza+BYD" in page.url
    link = first.locator("a[data-citation]")
    assert link.get_attribute("data-citation") == DAIMLER
    start, end = int(link.get_attribute("data-start")), int(link.get_attribute("data-end"))
    link.click()
    cited = page.locator("newsdesk-search .article mark[data-cited]")
    cited.wait_for()
    article = load_corpus(SEED_CORPUS)[0][0]
    assert cited.inner_text().split() == article.text[start:end].split()
    assert cited.is_visible() and page.locator("newsdesk-search [role=dialog]").is_visible()
    assert cited.evaluate(
        "m => { const r = m.getBoundingClientRect(); return r.top < window.innerHeight && r.bottom > 0; }"
    )
    page.screenshot(path=str(Path(__file__).resolve().parent.parent / "docs" / "widget-article.png"))
    page.keyboard.press("Escape")
    assert page.locator("newsdesk-search .panel").is_hidden()


def test_deep_link_runs_the_search_on_load(server: str, page):
    page.goto(server + "/?q=Xiaomi+license")
    page.locator("newsdesk-search ol.results > li").first.wait_for()
    assert page.get_by_label("Search the news articles").input_value() == "Xiaomi license"
    page.screenshot(path=str(Path(__file__).resolve().parent.parent / "docs" / "widget-results.png"))


def test_keyboard_reaches_citations(server: str, page):
    page.goto(server + "/?q=Denza")
    page.locator("newsdesk-search ol.results > li").first.wait_for()
    focused = ""
    for _ in range(8):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "document.querySelector('newsdesk-search').shadowRoot.activeElement?.dataset?.citation || ''"
        )
        if focused:
            break
    assert focused
    page.keyboard.press("Enter")
    page.locator("newsdesk-search .article mark[data-cited]").wait_for()


def test_hostile_article_text_is_shown_literally(server: str, page):
    page.goto(server + "/?q=zipzap+marker")
    first = page.locator("newsdesk-search ol.results > li").first
    first.wait_for()
    assert "<script>window.__pwned = 1</script>" in first.locator(".passage").inner_text()
    assert "<b>Hostile</b> title" == first.locator(".title").inner_text()
    first.locator("a[data-citation]").click()
    page.locator("newsdesk-search .article mark[data-cited]").wait_for()
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("newsdesk-search").evaluate("w => w.shadowRoot.querySelectorAll('script, img, b').length") == 0


def test_offsets_past_emoji_mark_the_right_text(server: str, page):
    page.goto(server + "/?q=Zeppelin+quokka")
    first = page.locator("newsdesk-search ol.results > li").first
    first.wait_for()
    assert first.locator(".title").inner_text() == "Emoji 🚗 title"
    assert sorted(first.locator(".passage mark").all_inner_texts()) == ["Zeppelin", "quokka"]
    link = first.locator("a[data-citation]")
    start, end = int(link.get_attribute("data-start")), int(link.get_attribute("data-end"))
    link.click()
    cited = page.locator("newsdesk-search .article mark[data-cited]")
    cited.wait_for()
    assert cited.inner_text() == ASTRAL_TEXT[start:end]
    assert page.locator("newsdesk-search .article").inner_text() == ASTRAL_TEXT


def test_api_docs_render_offline(server: str, page):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server + "/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() >= 6  # search (GET, POST), ask, articles, health, readiness...
    assert requested and all(url.startswith(server) or url.startswith("data:") for url in requested), requested


def test_empty_and_error_states(server: str, page):
    page.goto(server + "/")
    # Lexical mode: dense search always returns nearest neighbours, words that occur nowhere match nothing.
    page.evaluate("document.querySelector('newsdesk-search').setAttribute('mode', 'lexical')")
    page.get_by_label("Search the news articles").fill("qqqxxyz")
    page.get_by_role("button", name="Search").click()
    status = page.locator("newsdesk-search .status")
    status.filter(has_text="No passages").wait_for()
    # The API is down: point the widget at a closed port.
    page.evaluate(f"document.querySelector('newsdesk-search').setAttribute('api', 'http://127.0.0.1:{_free_port()}')")
    page.get_by_label("Search the news articles").fill("Denza")
    page.get_by_role("button", name="Search").click()
    page.locator("newsdesk-search .status.error").wait_for()
    assert "Could not reach" in status.inner_text()


def test_phone_width_layout(server: str, browser):
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    page.goto(server + "/?q=Xiaomi")
    page.locator("newsdesk-search ol.results > li").first.wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    context.close()
    assert not overflow
