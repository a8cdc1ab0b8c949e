"""Lexical analysis for BM25 and highlighting: words stemmed, stopwords dropped, CJK as bigrams."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator

import regex  # type: ignore[import-untyped]  # no stubs installed; used for two patterns
import Stemmer

# Bumped when the terms of some text change, so that indexes built before are rebuilt
# (recorded in the manifest as LexicalConfig.analysis). 3: combining marks and joiners stay
# inside words, words are NFKC-normalised and case-folded, and the folded form is split again.
ANALYSIS_VERSION = 3

# CJK ideographs, kana and hangul: no spaces between words, so runs become bigrams
# (a one-character run stays a unigram); "比亞迪" -> "比亞", "亞迪".
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# Invisible characters that join rather than split a word: soft hyphen, zero-width (non-)joiner,
# word joiner. They are dropped when the word is folded.
_JOINERS = "\u00ad\u200c\u200d\u2060"
# A word: a letter or digit, then letters, digits, combining marks and joiners, so that a
# decomposed "Zu\u0308rich", a Devanagari vowel sign or a soft hyphen does not cut it in two.
_TOKEN_RE = regex.compile(
    rf"(?V1)[{_CJK}]+|[[\p{{L}}\p{{N}}]--[{_CJK}]][[\p{{L}}\p{{N}}\p{{M}}{_JOINERS}]--[{_CJK}]]*"
)
_CJK_RE = regex.compile(f"[{_CJK}]")
# Pure-ASCII text (most of it) gives the same words with the standard library's engine, twice as fast.
_ASCII_TOKEN_RE = re.compile(r"[^\W_]+", re.ASCII)
_DROP_JOINERS = {ord(ch): None for ch in "\u00ad\u200c\u200d\u2060"}

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
    if text.isascii():
        for match in _ASCII_TOKEN_RE.finditer(text):
            lowered = match.group().lower()
            if lowered not in STOPWORDS:
                yield stem(lowered), match.start(), match.end()
        return
    for match in _TOKEN_RE.finditer(text):
        word, start, end = match.group(), match.start(), match.end()
        if _CJK_RE.match(word):
            yield from _bigrams(word, start)
            continue
        # Folding can change what the word is made of ("½" -> "1⁄2", halfwidth "ﾃｽﾄ" -> kana
        # "テスト"), so the folded form is split again; its terms all highlight the whole word.
        pieces = [word.lower()] if word.isascii() else [m.group() for m in _TOKEN_RE.finditer(fold(word))]
        for piece in pieces:
            if _CJK_RE.match(piece):
                yield from ((term, start, end) for term, _, _ in _bigrams(piece, 0))
            elif piece not in STOPWORDS:
                yield stem(piece), start, end


def _bigrams(run: str, start: int) -> Iterator[tuple[str, int, int]]:
    """A CJK run's overlapping bigrams (a lone character as itself), with offsets from `start`."""
    if len(run) == 1:
        yield run, start, start + 1
    for i in range(len(run) - 1):
        yield run[i : i + 2], start + i, start + i + 2


def fold(word: str) -> str:
    """The form a word is matched in: compatibility-normalised and case-folded (Elasticsearch's nfkc_cf).

    Composed and decomposed accents ("Zürich"), fullwidth letters ("ｚｅｂｒａ"), ligatures
    ("ﬁbrosis") and soft hyphens ("infor\u00admation") then meet the plain form a query is
    typed in. Offsets stay those of the original text.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold()).translate(_DROP_JOINERS)


def analyze(text: str) -> list[str]:
    """The index terms of `text`."""
    return [term for term, _, _ in terms_with_offsets(text)]
