"""Lexical analysis for BM25 and highlighting: words stemmed, stopwords dropped, CJK as bigrams."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator

import regex
import Stemmer

# Bumped when the terms of some text change, so that indexes built before are rebuilt
# (recorded in the manifest as LexicalConfig.analysis). 2: combining marks stay inside words,
# terms are NFKC-normalised and case-folded.
ANALYSIS_VERSION = 2

# CJK ideographs, kana and hangul: no spaces between words, so runs become bigrams
# (a one-character run stays a unigram); "比亞迪" -> "比亞", "亞迪".
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# A word: a letter or digit, then letters, digits and combining marks, so that a decomposed
# "Zu\u0308rich" or a Devanagari vowel sign does not cut the word in two.
_TOKEN_RE = regex.compile(rf"(?V1)[{_CJK}]+|[[\p{{L}}\p{{N}}]--[{_CJK}]][[\p{{L}}\p{{N}}\p{{M}}]--[{_CJK}]]*")
_CJK_RE = regex.compile(f"[{_CJK}]")

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
        lowered = word.lower() if word.isascii() else fold(word)
        if lowered in STOPWORDS:
            continue
        yield stem(lowered), start, match.end()


def fold(word: str) -> str:
    """The form a word is matched in: compatibility-normalised and case-folded (Elasticsearch's nfkc_cf).

    Composed and decomposed accents ("Zürich"), fullwidth letters ("ｚｅｂｒａ") and ligatures
    ("ﬁbrosis") then meet the plain form a query is typed in. Offsets stay those of the original text.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold())


def analyze(text: str) -> list[str]:
    """The index terms of `text`."""
    return [term for term, _, _ in terms_with_offsets(text)]
