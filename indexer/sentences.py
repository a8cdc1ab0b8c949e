"""Sentence boundaries with exact character offsets (for chunking and answer extraction)."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (or their CJK forms), optionally followed by closing quotes or
# brackets, then whitespace; or at a line break. Abbreviations such as "Co." and "Mr."
# in the middle of a name must not end a sentence.
_END_RE = re.compile(r"[.!?\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*(?=\s)|\n")
_CJK_END_RE = re.compile(r"[\u3002\uff01\uff1f]")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "co", "corp", "inc", "ltd",
    "no", "vs", "etc", "gen", "gov", "sen", "rep", "jan", "feb", "mar", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "e.g", "i.e", "fig", "approx",
}
_TITLES = {"mr", "mrs", "ms", "dr", "prof", "st", "mt", "gen", "gov", "sen", "rep"}


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each sentence in `text`, whitespace trimmed, in order."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _END_RE.finditer(text):
        end = match.end()
        mark = match.group()
        if mark != "\n" and not _CJK_END_RE.match(mark) and not _is_boundary(text, match.start(), end):
            continue
        _append_trimmed(text, start, end, spans)
        start = end
    _append_trimmed(text, start, len(text), spans)
    return spans


def _is_boundary(text: str, dot: int, end: int) -> bool:
    """Whether the period at `dot` ends a sentence rather than an abbreviation or initial."""
    following = text[end:].lstrip(" \t")
    if not following:
        return True
    if following[0].islower() or following[0].isdigit():
        return False
    if text[dot] != ".":
        return True
    word_start = dot
    while word_start > 0 and (text[word_start - 1].isalpha() or text[word_start - 1] == "."):
        word_start -= 1
    word = text[word_start:dot].lower()
    if len(word) == 1 and word.isalpha() and text[dot - 1].isupper():
        return False  # an initial: "Warren E. Buffett"
    return word not in _TITLES and not (word in _ABBREVIATIONS and following[0].isupper() and word in {"u.s", "u.k"})


def _append_trimmed(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))
