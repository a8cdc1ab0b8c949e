import random

import pytest

from indexer.chunking import Chunker, ChunkerConfig, embedding_text
from indexer.corpus import Article, load_corpus
from indexer.sentences import split_sentences
from indexer.tokens import get_encoding, wordpiece_counter
from tests.conftest import SEED_CORPUS


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(ChunkerConfig(), wordpiece_counter())


def _check(article: Article, chunker: Chunker) -> None:
    chunks = chunker.chunk(article)
    assert chunks, "every non-empty article yields chunks"
    count = wordpiece_counter()
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert article.text[chunk.start : chunk.end] == chunk.text
        assert count(embedding_text(article.title, chunk.text, chunker.config)) <= 256
    # Nothing is lost: every non-space character is inside some chunk.
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(article.text) if not ch.isspace())


def test_seed_articles_offsets_and_limits(chunker: Chunker):
    for article in load_corpus(SEED_CORPUS)[0]:
        _check(article, chunker)


def test_chunks_overlap_and_respect_token_budget(chunker: Chunker):
    sentences = [f"Sentence number {i} talks about electric cars and batteries." for i in range(60)]
    article = Article("a", "T", " ".join(sentences))
    chunks = chunker.chunk(article)
    assert len(chunks) > 3
    encoding = get_encoding()
    for first, second in zip(chunks, chunks[1:], strict=False):
        assert second.start < first.end, "consecutive chunks overlap"
        assert second.start > first.start
    assert all(len(encoding.encode(c.text)) <= chunker.config.max_tokens + 5 for c in chunks)
    # Snapped to sentence boundaries: each chunk starts at a sentence and ends with a period.
    assert all(c.text.startswith("Sentence") and c.text.endswith(".") for c in chunks)


def test_giant_sentence_without_spaces_is_split_not_truncated(chunker: Chunker):
    article = Article("cjk", "比亞迪", "比亞迪汽車" * 400)
    _check(article, chunker)
    article = Article("long", "Long", " ".join(["word"] * 3000))
    _check(article, chunker)


def test_wordpiece_heavy_text_is_split_to_fit_the_model():
    # Few tiktoken tokens but many word pieces: the model limit, not max_tokens, binds.
    text = " ".join(f"Zxqv{i}ptk" for i in range(200)) + "."
    article = Article("wp", "Title", text)
    chunker = Chunker(ChunkerConfig(max_tokens=1000, overlap_tokens=0), wordpiece_counter())
    _check(article, chunker)
    assert len(chunker.chunk(article)) > 1


def test_random_texts_round_trip(chunker: Chunker):
    rng = random.Random(7)
    alphabet = "abc def. GHI! jk? 北京汽車。\n\n “quoted.” Co. Mr. X. 3.5 "
    for n in range(20):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3000))).strip() or "x"
        _check(Article(f"r{n}", "", text), chunker)


def test_sentence_splitter_keeps_names_together():
    text = "Xiaomi talked to Brilliance Auto Group Holdings Co. and Chery. Mr. Lei pledged $10 billion. Done"
    spans = [text[s:e] for s, e in split_sentences(text)]
    assert spans == [
        "Xiaomi talked to Brilliance Auto Group Holdings Co. and Chery.",
        "Mr. Lei pledged $10 billion.",
        "Done",
    ]


def test_config_validation():
    with pytest.raises(ValueError):
        ChunkerConfig(max_tokens=100, overlap_tokens=100)
