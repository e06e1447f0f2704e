"""Split long texts into overlapping word windows so each chunk fits an encoder's input.

Encoders truncate silently past their token limit (256 or 512 tokens for most sentence encoders), so
the end of a long document would never be searchable. Chunking counts words, not tokens: it needs no
tokenizer, and a word budget with headroom (see ``words_per_chunk``) keeps a chunk under the limit
for ordinary prose. Offsets are exact character offsets into the original text, so a hit on a chunk
can be highlighted in the source document.

One item's text is bounded too: a ``Chunker`` keeps at most ``max_chunks`` windows (the beginning
of the text) and says how many the whole text makes, so the ingest can report what it cut. It
stops reading words once the cap is reached, so a text of megabytes costs no more to chunk than its
first windows (and one linear count of its words).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from kinsight.engine.errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_CHUNKS",
    "DEFAULT_OVERLAP",
    "WORDS_PER_TOKEN",
    "Chunk",
    "ChunkedText",
    "Chunker",
    "capped_overlap",
    "chunk_text",
    "count_chunks",
    "words_per_chunk",
]

# Measured on the Debian descriptions with MiniLM's WordPiece: a median of 1.5 tokens per word
# (0.67 words per token; technical text has many rare words). 0.6 leaves headroom for the special
# tokens ([CLS], [SEP]) and for texts denser than the median.
WORDS_PER_TOKEN = 0.6

# Words shared by consecutive chunks, so a sentence cut at a boundary is whole in one of them.
DEFAULT_OVERLAP = 32

# Chunks of one item that are encoded; the rest of its text stays in its fields, where BM25 reads
# all of it. The longest of the 33,265 Debian descriptions (irssi-scripts, 3,440 words) makes 29
# chunks of 153 words (MiniLM, 256 tokens), 99.99% of them 12 or fewer; 64 chunks (7,776 words
# there, about 50,000 characters of prose) is twice the longest, so no real description is cut,
# while one pasted log or book can no longer hold the only writer for minutes: on 2 CPU cores a
# 2 MB text made 3,380 full 256-token chunks and took 574 s to encode, its first 64 took 12 s.
DEFAULT_MAX_CHUNKS = 64

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    """One window of a text: ``text == original[start:end]``, ``index`` counts from 0."""

    index: int
    start: int
    end: int
    text: str


def words_per_chunk(max_tokens: int | None) -> int | None:
    """The word budget for an encoder that reads at most ``max_tokens`` tokens; None: no limit."""
    if max_tokens is None:
        return None
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidInputError(
            f"max_tokens must be a positive integer or None, got {max_tokens!r}; pass the "
            "encoder's maximum input length in tokens, or None to keep texts whole"
        )
    return max(1, int(max_tokens * WORDS_PER_TOKEN))


def capped_overlap(max_words: int | None, overlap: int = DEFAULT_OVERLAP) -> int:
    """Small windows (short-input models) cannot take the default overlap: cap it at a quarter."""
    return overlap if max_words is None else min(overlap, max_words // 4)


@dataclass(frozen=True)
class ChunkedText:
    """The windows of one text that are encoded: ``chunks``, the first of ``total`` windows that
    the whole text (``length`` characters) makes; fewer than ``total`` when the cap cut it."""

    chunks: list[Chunk]
    total: int
    length: int

    @property
    def cut(self) -> bool:
        return len(self.chunks) < self.total


@dataclass(frozen=True)
class Chunker:
    """How one space's texts are chunked: windows of ``max_words`` words (None: whole texts)
    sharing ``overlap`` words, at most ``max_chunks`` of them per text (None: no cap)."""

    max_words: int | None
    overlap: int = DEFAULT_OVERLAP
    max_chunks: int | None = DEFAULT_MAX_CHUNKS

    def __post_init__(self) -> None:
        if self.max_words is not None:
            _check_options(self.max_words, self.overlap)
        _check_max_chunks(self.max_chunks)

    def __call__(self, text: str) -> ChunkedText:
        chunks = chunk_text(text, self.max_words, self.overlap, max_chunks=self.max_chunks)
        total = len(chunks)
        if self.max_chunks is not None and total == self.max_chunks:
            total = count_chunks(text, self.max_words, self.overlap)
        return ChunkedText(chunks, total, len(text))

    def cuts(self, text: str) -> bool:
        """Whether the cap cuts ``text``; reads at most the words the kept windows cover."""
        if self.max_words is None or self.max_chunks is None:
            return False
        covered = _words_covered(self.max_words, self.overlap, self.max_chunks)
        if (len(text) + 1) // 2 <= covered:  # a word and the space after it: 2 characters or more
            return False
        beyond = itertools.islice(_WORD.finditer(text), covered, None)
        return next(beyond, None) is not None


def chunk_text(text: str, max_words: int | None, overlap: int = DEFAULT_OVERLAP, *,
               max_chunks: int | None = None) -> list[Chunk]:
    """Windows of ``max_words`` words, each starting ``max_words - overlap`` words after the last.

    A text of at most ``max_words`` words (or any text when ``max_words`` is None) is one chunk:
    the text without surrounding whitespace. Empty or whitespace-only text gives no chunks. The
    last window ends at the last word, so it may be shorter than ``max_words``. With
    ``max_chunks``, only the first ``max_chunks`` windows are made, and words past them are not
    read.
    """
    if max_words is not None:
        _check_options(max_words, overlap)
    _check_max_chunks(max_chunks)
    found = _WORD.finditer(text)
    if max_words is not None and max_chunks is not None:
        # One word past the last kept window, so a text that ends there is told from a longer one.
        found = itertools.islice(found, _words_covered(max_words, overlap, max_chunks) + 1)
    words = list(found)
    if not words:
        return []
    if max_words is None or len(words) <= max_words:
        start, end = words[0].start(), words[-1].end()
        return [Chunk(index=0, start=start, end=end, text=text[start:end])]

    step = max_words - overlap
    chunks: list[Chunk] = []
    first = 0
    while True:
        last = min(first + max_words, len(words)) - 1
        start, end = words[first].start(), words[last].end()
        chunks.append(Chunk(index=len(chunks), start=start, end=end, text=text[start:end]))
        # Stop once a window reaches the last word: another would hold only words already seen.
        if last == len(words) - 1 or len(chunks) == max_chunks:
            return chunks
        first += step


def count_chunks(text: str, max_words: int | None, overlap: int = DEFAULT_OVERLAP) -> int:
    """How many windows ``chunk_text`` makes of ``text`` without a cap, counted without making them."""
    if max_words is not None:
        _check_options(max_words, overlap)
    # str.split() splits on exactly the characters that \s matches (str.isspace, checked for every
    # code point), so it counts the words of _WORD, three times faster than matching them.
    words = len(text.split())
    if words == 0:
        return 0
    if max_words is None or words <= max_words:
        return 1
    return 1 + -(-(words - max_words) // (max_words - overlap))  # ceiling division


def _words_covered(max_words: int, overlap: int, max_chunks: int) -> int:
    """Words that the first ``max_chunks`` windows of a long enough text cover."""
    return max_words + (max_chunks - 1) * (max_words - overlap)


def _check_options(max_words: int, overlap: int) -> None:
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise InvalidInputError(
            f"max_words must be a positive integer or None, got {max_words!r}; pass the number "
            "of words per chunk (see words_per_chunk), or None to keep texts whole"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < max_words:
        raise InvalidInputError(
            f"overlap must be an integer from 0 to max_words - 1 ({max_words - 1}), got "
            f"{overlap!r}; pass a smaller overlap or a larger max_words"
        )


def _check_max_chunks(max_chunks: int | None) -> None:
    if max_chunks is None:
        return
    if isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 1:
        raise InvalidInputError(
            f"max_chunks must be a positive integer or None, got {max_chunks!r}; pass the most "
            f"chunks of one item to encode (default {DEFAULT_MAX_CHUNKS}), or None for no cap"
        )
