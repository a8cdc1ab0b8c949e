/* PLACEHOLDER: the citation widget issue replaces this file.
 * It exists only so that GET /widget.js is served by the API (see api/app.py). */
console.info("newsdesk widget placeholder: the real widget is not built yet");
