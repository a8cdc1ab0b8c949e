/*
 * newsdesk citation widget: <newsdesk-search api="https://host:port"></newsdesk-search>
 *
 * One file, no framework, no CDN. Shadow DOM keeps host-page styles out and ours in.
 * Every piece of article text is inserted with textContent / text nodes, never as HTML,
 * so an article containing <script> or <img onerror> shows literally and runs nothing.
 *
 * Attributes:
 *   api       base URL of the newsdesk service (default: this page's origin)
 *   k         number of passages (default 5)
 *   mode      hybrid (default), dense or lexical
 *   sync-url  when present, the query is mirrored in the page URL as ?q=... and a
 *             ?q= on load runs that search (shareable links)
 *   query     a search to run on load
 */
(() => {
  "use strict";

  if (customElements.get("newsdesk-search")) return;

  const STYLE = `
    :host { display: block; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
            color: #1d232a; max-width: 48rem; }
    * { box-sizing: border-box; }
    form { display: flex; flex-wrap: wrap; gap: .5rem; }
    input[type=search] { flex: 1 1 14rem; min-width: 0; font: inherit; padding: .55rem .7rem;
            border: 1px solid #8a96a3; border-radius: .4rem; }
    button { font: inherit; padding: .55rem 1rem; border-radius: .4rem; border: 1px solid #1f4f82;
            background: #1f5fa0; color: #fff; cursor: pointer; }
    button.secondary { background: #fff; color: #1f4f82; }
    button:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #f0b400;
            outline-offset: 2px; }
    .sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
            overflow: hidden; clip: rect(0,0,0,0); white-space: nowrap; border: 0; }
    .status { margin: .75rem 0; color: #4a5560; }
    .status.error { color: #9b1c1c; background: #fdecec; border: 1px solid #f3b4b4;
            padding: .5rem .75rem; border-radius: .4rem; }
    ol.results { list-style: none; padding: 0; margin: 0; }
    ol.results > li { border-top: 1px solid #dde3e8; padding: .8rem 0; }
    .title { font-weight: 600; margin: 0; font-size: 1.02rem; }
    .meta { color: #56606b; font-size: .875rem; margin: .1rem 0 .35rem; }
    .passage { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
    mark { background: #ffe58a; color: inherit; padding: 0 .1em; border-radius: .15em; }
    a[data-citation] { color: #1f5fa0; font-size: .9rem; }
    .answer { background: #f3f7fb; border: 1px solid #c9d9ea; border-radius: .5rem;
            padding: .75rem 1rem; margin: .75rem 0; }
    .answer p { margin: 0 0 .4rem; }
    .answer .note { color: #56606b; font-size: .875rem; }
    .panel { position: fixed; inset: 0; background: rgba(16,24,32,.45); display: flex;
            justify-content: flex-end; z-index: 2147483000; }
    .panel[hidden] { display: none; }
    .sheet { background: #fff; width: min(42rem, 100%); height: 100%; display: flex;
            flex-direction: column; box-shadow: -4px 0 24px rgba(0,0,0,.2); }
    .sheet header { display: flex; gap: .75rem; align-items: flex-start;
            justify-content: space-between; padding: .9rem 1rem; border-bottom: 1px solid #dde3e8; }
    .sheet h2 { font-size: 1.1rem; margin: 0; }
    .article { padding: 1rem; overflow-y: auto; white-space: pre-wrap; overflow-wrap: anywhere;
            flex: 1; }
    @media (max-width: 30rem) { :host { font-size: 15px; } button { flex: 1 1 auto; } }
  `;

  let instances = 0;

  class NewsdeskSearch extends HTMLElement {
    constructor() {
      super();
      this.uid = `nd${++instances}`;
      this.root = this.attachShadow({ mode: "open" });
      this.controller = null;
      this.lastFocus = null;
      this.render();
    }

    get api() {
      const base = this.getAttribute("api") || window.location.origin;
      return base.replace(/\/+$/, "");
    }

    get k() {
      const k = parseInt(this.getAttribute("k") || "5", 10);
      return Number.isFinite(k) && k > 0 ? Math.min(k, 50) : 5;
    }

    get mode() {
      const mode = this.getAttribute("mode");
      return ["hybrid", "dense", "lexical"].includes(mode) ? mode : "hybrid";
    }

    connectedCallback() {
      let initial = this.getAttribute("query") || "";
      if (this.hasAttribute("sync-url")) {
        initial = new URLSearchParams(window.location.search).get("q") || initial;
        window.addEventListener("popstate", () => {
          const q = new URLSearchParams(window.location.search).get("q") || "";
          this.input.value = q;
          if (q) this.run("search", q, false);
        });
      }
      if (initial.trim()) {
        this.input.value = initial;
        this.run("search", initial, false);
      }
    }

    render() {
      const style = el("style");
      style.textContent = STYLE;
      const form = el("form", { role: "search" });
      const label = el("label", { for: `${this.uid}-q`, class: "sr-only" }, "Search the news articles");
      this.input = el("input", {
        id: `${this.uid}-q`, type: "search", name: "q", autocomplete: "off",
        placeholder: "Ask about the news…", maxlength: "1000",
      });
      const search = el("button", { type: "submit" }, "Search");
      const ask = el("button", { type: "button", class: "secondary" }, "Ask");
      form.append(label, this.input, search, ask);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.run("search", this.input.value, true);
      });
      ask.addEventListener("click", () => this.run("ask", this.input.value, true));

      this.status = el("div", { class: "status", role: "status", "aria-live": "polite" });
      this.answerBox = el("section", { class: "answer", "aria-label": "Answer", hidden: "" });
      this.list = el("ol", { class: "results", "aria-label": "Search results" });

      this.panel = el("div", { class: "panel", hidden: "" });
      const sheet = el("div", {
        class: "sheet", role: "dialog", "aria-modal": "true", "aria-labelledby": `${this.uid}-t`,
      });
      const header = el("header");
      const heading = el("div");
      this.panelTitle = el("h2", { id: `${this.uid}-t` });
      this.panelMeta = el("p", { class: "meta" });
      heading.append(this.panelTitle, this.panelMeta);
      const close = el("button", { type: "button", class: "secondary", "aria-label": "Close article" }, "Close");
      close.addEventListener("click", () => this.closePanel());
      header.append(heading, close);
      this.articleBody = el("div", { class: "article", tabindex: "0" });
      sheet.append(header, this.articleBody);
      this.panel.append(sheet);
      this.panel.addEventListener("click", (event) => {
        if (event.target === this.panel) this.closePanel();
      });
      this.closeButton = close;
      this.root.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && !this.panel.hidden) {
          event.preventDefault();
          this.closePanel();
        }
      });
      this.root.append(style, form, this.status, this.answerBox, this.list, this.panel);
    }

    setStatus(text, kind) {
      this.status.textContent = text;
      this.status.className = kind === "error" ? "status error" : "status";
      if (kind === "error") this.status.setAttribute("role", "alert");
      else this.status.setAttribute("role", "status");
    }

    async run(action, raw, pushUrl) {
      const query = (raw || "").trim();
      if (!query) {
        this.setStatus("Type a question or some words to search for.", "error");
        this.input.focus();
        return;
      }
      if (this.hasAttribute("sync-url") && pushUrl) {
        const url = new URL(window.location.href);
        url.searchParams.set("q", query);
        window.history.pushState({ q: query }, "", url);
      }
      if (this.controller) this.controller.abort();
      this.controller = new AbortController();
      this.list.replaceChildren();
      this.answerBox.hidden = true;
      this.answerBox.replaceChildren();
      this.list.setAttribute("aria-busy", "true");
      this.setStatus(action === "ask" ? "Finding an answer…" : "Searching…");
      try {
        const data = action === "ask"
          ? await this.fetchJson("/ask", { method: "POST", body: JSON.stringify({ question: query, k: this.k }) })
          : await this.fetchJson(`/search?${new URLSearchParams({ q: query, k: String(this.k), mode: this.mode })}`);
        const hits = action === "ask" ? data.passages : data.hits;
        if (action === "ask") this.showAnswer(data);
        this.showHits(hits || [], query);
      } catch (error) {
        if (error.name === "AbortError") return;
        this.setStatus(error.message, "error");
      } finally {
        this.list.removeAttribute("aria-busy");
      }
    }

    async fetchJson(path, init = {}) {
      let response;
      try {
        response = await fetch(this.api + path, {
          ...init,
          headers: { Accept: "application/json", ...(init.body ? { "Content-Type": "application/json" } : {}) },
          signal: this.controller ? this.controller.signal : undefined,
        });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new Error("Could not reach the newsdesk service. Check your connection and try again.");
      }
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
      if (!response.ok) {
        const message = body && body.error && body.error.message;
        throw new Error(message ? `The search failed: ${message}` : `The search failed (HTTP ${response.status}). Please try again.`);
      }
      return body;
    }

    showHits(hits, query) {
      if (!hits.length) {
        this.setStatus(`No passages match “${query}”. Try other words.`);
        return;
      }
      this.setStatus(`${hits.length} passage${hits.length === 1 ? "" : "s"} for “${query}”.`);
      for (const hit of hits) this.list.append(this.renderHit(hit));
    }

    renderHit(hit) {
      const c = hit.citation;
      const item = el("li");
      const title = el("p", { class: "title" }, c.title || c.article_id);
      const meta = el("p", { class: "meta" }, describe(c));
      const passage = el("p", { class: "passage" });
      passage.append(...markSpans(hit.text, c.start, hit.highlights || []));
      const link = this.citationLink(c, `Open in article: ${c.title || c.article_id}`);
      item.append(title, meta, passage, link);
      return item;
    }

    citationLink(c, text) {
      const params = new URLSearchParams({ start: String(c.start), end: String(c.end) });
      const link = el("a", {
        href: `${this.api}/articles/${encodeURIComponent(c.article_id)}?${params}`,
        "data-citation": c.article_id,
        "data-start": String(c.start),
        "data-end": String(c.end),
      }, text);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        this.openArticle(c, link);
      });
      return link;
    }

    showAnswer(data) {
      const box = this.answerBox;
      const text = el("p");
      // "[n]" markers in the answer become links to citation n.
      const parts = String(data.answer || "").split(/(\[\d+\])/);
      for (const part of parts) {
        const match = /^\[(\d+)\]$/.exec(part);
        const citation = match && data.citations ? data.citations[Number(match[1]) - 1] : null;
        if (citation) text.append(this.citationLink(citation, part));
        else text.append(document.createTextNode(part));
      }
      box.append(text);
      if (!data.answerable) {
        box.append(el("p", { class: "note" }, "The articles do not appear to answer this; the closest passages are below."));
      }
      box.hidden = false;
    }

    async openArticle(citation, opener) {
      this.lastFocus = opener;
      this.panelTitle.textContent = citation.title || citation.article_id;
      this.panelMeta.textContent = describe(citation);
      this.articleBody.textContent = "Loading the article…";
      this.panel.hidden = false;
      this.closeButton.focus();
      try {
        const article = await this.fetchJson(`/articles/${encodeURIComponent(citation.article_id)}`);
        const text = article.text || "";
        const [start, end] = unitOffsets(text, [citation.start, citation.end]);
        const mark = el("mark", { "data-cited": "" }, text.slice(start, end));
        this.articleBody.replaceChildren(
          document.createTextNode(text.slice(0, start)),
          mark,
          document.createTextNode(text.slice(end)),
        );
        mark.scrollIntoView({ block: "center" });
      } catch (error) {
        this.articleBody.replaceChildren(el("p", { class: "status error", role: "alert" }, error.message));
      }
    }

    closePanel() {
      this.panel.hidden = true;
      if (this.lastFocus) this.lastFocus.focus();
    }
  }

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function describe(c) {
    const parts = [c.source, c.date ? formatDate(c.date) : null].filter(Boolean);
    return parts.length ? parts.join(" · ") : "Source and date not given";
  }

  function formatDate(iso) {
    const date = new Date(`${iso}T00:00:00Z`);
    if (Number.isNaN(date.getTime())) return iso;
    return date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });
  }

  // The API's offsets count characters (code points); a JavaScript string index counts
  // UTF-16 units, two for an emoji or a rare CJK character. This converts code-point
  // offsets (0 or more; past the end means the end) to string indices in one pass.
  function unitOffsets(text, offsets) {
    if (!/[\uD800-\uDFFF]/.test(text)) return offsets.map((o) => Math.min(o, text.length));
    const wanted = [...new Set(offsets)].sort((a, b) => a - b);
    const found = new Map();
    let point = 0;
    let unit = 0;
    for (const offset of wanted) {
      while (point < offset && unit < text.length) {
        const code = text.charCodeAt(unit);
        unit += code >= 0xd800 && code <= 0xdbff && unit + 1 < text.length ? 2 : 1;
        point += 1;
      }
      found.set(offset, unit);
    }
    return offsets.map((o) => found.get(o));
  }

  // Split passage text (which starts at article offset `base`) into text nodes and
  // <mark> elements for the highlight spans (article offsets).
  function markSpans(text, base, highlights) {
    const points = highlights.flatMap((h) => [Math.max(0, h.start - base), Math.max(0, h.end - base)]);
    const units = unitOffsets(text, points);
    const spans = [];
    for (let i = 0; i < units.length; i += 2) if (units[i + 1] > units[i]) spans.push([units[i], units[i + 1]]);
    spans.sort((a, b) => a[0] - b[0]);
    const nodes = [];
    let cursor = 0;
    for (const [start, end] of spans) {
      if (start < cursor) continue;
      if (start > cursor) nodes.push(document.createTextNode(text.slice(cursor, start)));
      nodes.push(el("mark", {}, text.slice(start, end)));
      cursor = end;
    }
    if (cursor < text.length) nodes.push(document.createTextNode(text.slice(cursor)));
    return nodes;
  }

  customElements.define("newsdesk-search", NewsdeskSearch);
})();
