"""Split articles into overlapping token windows snapped to sentence boundaries.

Every chunk satisfies `article.text[chunk.start:chunk.end] == chunk.text`, and its
embedding text never exceeds the model's word-piece limit (the model would silently
truncate it and drop the tail from the index).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from indexer.corpus import Article
from indexer.sentences import split_sentences
from indexer.tokens import get_encoding


@dataclass(frozen=True)
class ChunkerConfig:
    """Chunking settings, recorded in the index manifest."""

    max_tokens: int = 160
    overlap_tokens: int = 32
    encoding: str = "cl100k_base"
    title_in_embedding: bool = True
    model_max_tokens: int = 256

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError("overlap_tokens must be >= 0 and smaller than max_tokens")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    """A passage of an article, addressed by character offsets into the article text."""

    article_id: str
    ordinal: int
    start: int
    end: int
    text: str

    @property
    def chunk_id(self) -> str:
        return f"{self.article_id}#{self.ordinal}"


def embedding_text(title: str, passage: str, config: ChunkerConfig) -> str:
    """What the embedding model sees for a chunk: the passage, led by its article title if configured."""
    return f"{title}\n{passage}" if config.title_in_embedding and title else passage


class Chunker:
    """Token-window chunker; `count_model_tokens` enforces the embedding model's limit."""

    def __init__(self, config: ChunkerConfig, count_model_tokens: Callable[[str], int] | None = None) -> None:
        self.config = config
        self._encoding = get_encoding(config.encoding)
        self._count_model_tokens = count_model_tokens

    def chunk(self, article: Article) -> list[Chunk]:
        """The article's chunks in reading order."""
        text = article.text
        pieces: list[tuple[int, int, int]] = []  # (start, end, tokens)
        for start, end in split_sentences(text):
            pieces.extend(self._split_long(text, start, end, self.config.max_tokens))
        spans: list[tuple[int, int]] = []
        for start, end in self._pack(pieces):
            spans.extend(self._fit_model(article, start, end))
        return [
            Chunk(article.article_id, ordinal, start, end, text[start:end])
            for ordinal, (start, end) in enumerate(spans)
        ]

    def _count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def _split_long(self, text: str, start: int, end: int, limit: int) -> list[tuple[int, int, int]]:
        """A sentence as one piece, or cut into windows of at most `limit` tokens."""
        tokens = self._encoding.encode(text[start:end], disallowed_special=())
        if len(tokens) <= limit:
            return [(start, end, len(tokens))]
        _, offsets = self._encoding.decode_with_offsets(tokens)
        pieces = []
        first = 0
        while first < len(tokens):
            last = min(first + limit, len(tokens))
            if last < len(tokens):
                # Prefer to cut at a space in the window's last quarter, so words stay whole.
                for candidate in range(last, first + (3 * limit) // 4, -1):
                    if text[start + offsets[candidate] - 1].isspace():
                        last = candidate
                        break
            piece_start = start + offsets[first]
            piece_end = start + offsets[last] if last < len(tokens) else end
            if piece_end > piece_start:
                stripped_end = piece_end
                while stripped_end > piece_start and text[stripped_end - 1].isspace():
                    stripped_end -= 1
                pieces.append((piece_start, stripped_end, last - first))
            first = last
        return pieces

    def _pack(self, pieces: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """Greedily fill windows of max_tokens, each starting with up to overlap_tokens of the last."""
        limit, overlap = self.config.max_tokens, self.config.overlap_tokens
        spans = []
        i = 0
        while i < len(pieces):
            j, total = i, 0
            while j < len(pieces) and (j == i or total + pieces[j][2] <= limit):
                total += pieces[j][2]
                j += 1
            spans.append((pieces[i][0], pieces[j - 1][1]))
            if j >= len(pieces):
                break
            k, carried = j, 0
            while k - 1 > i and carried + pieces[k - 1][2] <= overlap:
                k -= 1
                carried += pieces[k][2]
            i = k
        return spans

    def _fit_model(self, article: Article, start: int, end: int) -> list[tuple[int, int]]:
        """Split a span until its embedding text fits the model's word-piece limit."""
        if self._count_model_tokens is None:
            return [(start, end)]
        passage = article.text[start:end]
        fits = self._count_model_tokens(embedding_text(article.title, passage, self.config))
        if fits <= self.config.model_max_tokens:
            return [(start, end)]
        sentences = [(start + s, start + e) for s, e in split_sentences(passage)]
        if len(sentences) > 1:
            middle = len(sentences) // 2
            left, right = (sentences[0][0], sentences[middle - 1][1]), (sentences[middle][0], sentences[-1][1])
        else:
            half = max(1, self._count(passage) // 2)
            parts = self._split_long(article.text, start, end, half)
            if len(parts) < 2:  # cannot split further (one giant token): keep it rather than lose it
                return [(start, end)]
            cut = len(parts) // 2
            left, right = (parts[0][0], parts[cut - 1][1]), (parts[cut][0], parts[-1][1])
        return self._fit_model(article, *left) + self._fit_model(article, *right)
