"""Lexical analysis for BM25 and highlighting: words stemmed, stopwords dropped, CJK as bigrams."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import Stemmer

# CJK ideographs, kana and hangul: no spaces between words, so runs become bigrams
# (a one-character run stays a unigram); "比亞迪" -> "比亞", "亞迪".
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN_RE = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_CJK_RE = re.compile(f"[{_CJK}]")

# Lucene's English stopwords plus the possessive/contraction stubs and question words
# that natural-language queries carry but that say nothing about the topic.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with s t d ll re ve m what which who whom whose when where "
    "why how did does do".split()
)


@functools.cache
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def terms_with_offsets(text: str) -> Iterator[tuple[str, int, int]]:
    """(term, start, end) for each index term of `text`, offsets into `text`."""
    stem = _stemmer().stemWord
    for match in _TOKEN_RE.finditer(text):
        word, start = match.group(), match.start()
        if _CJK_RE.match(word):
            if len(word) == 1:
                yield word, start, start + 1
            for i in range(len(word) - 1):
                yield word[i : i + 2], start + i, start + i + 2
            continue
        lowered = word.lower()
        if lowered in STOPWORDS:
            continue
        yield stem(lowered), start, match.end()


def analyze(text: str) -> list[str]:
    """The index terms of `text`."""
    return [term for term, _, _ in terms_with_offsets(text)]
