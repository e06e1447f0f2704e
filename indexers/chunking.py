"""Split long texts into overlapping word windows so each chunk fits an encoder's input.

Encoders truncate silently past their token limit (256 or 512 tokens for most sentence encoders), so
the end of a long document would never be searchable. Chunking counts words, not tokens: it needs no
tokenizer, and a word budget with headroom (see ``words_per_chunk``) keeps a chunk under the limit
for ordinary prose. Offsets are exact character offsets into the original text, so a hit on a chunk
can be highlighted in the source document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kinsight.engine.errors import InvalidInputError

__all__ = [
    "DEFAULT_OVERLAP",
    "WORDS_PER_TOKEN",
    "Chunk",
    "capped_overlap",
    "chunk_text",
    "words_per_chunk",
]

# Measured on the Debian descriptions with MiniLM's WordPiece: a median of 1.5 tokens per word
# (0.67 words per token; technical text has many rare words). 0.6 leaves headroom for the special
# tokens ([CLS], [SEP]) and for texts denser than the median.
WORDS_PER_TOKEN = 0.6

# Words shared by consecutive chunks, so a sentence cut at a boundary is whole in one of them.
DEFAULT_OVERLAP = 32

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


def chunk_text(text: str, max_words: int | None, overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    """Windows of ``max_words`` words, each starting ``max_words - overlap`` words after the last.

    A text of at most ``max_words`` words (or any text when ``max_words`` is None) is one chunk:
    the text without surrounding whitespace. Empty or whitespace-only text gives no chunks. The
    last window ends at the last word, so it may be shorter than ``max_words``.
    """
    if max_words is not None:
        _check_options(max_words, overlap)
    words = list(_WORD.finditer(text))
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
        if last == len(words) - 1:
            return chunks
        first += step


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
