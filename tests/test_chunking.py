"""Chunking: exact offsets, overlap, no chunking for short texts, the per-text chunk cap, errors
for bad options."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest

from kinsight.engine.errors import InvalidInputError
from kinsight.indexers.chunking import (
    DEFAULT_MAX_CHUNKS,
    Chunk,
    Chunker,
    chunk_text,
    count_chunks,
    words_per_chunk,
)

__all__: list[str] = []


def _words(text: str) -> list[str]:
    return text.split()


def _numbered(count: int) -> str:
    # Mixed whitespace and non-ASCII words, so offsets cannot be right by accident.
    separators = [" ", "  ", "\n", "\t", " \n "]
    parts = []
    for i in range(count):
        parts.append(f"wörd{i}")
        parts.append(separators[i % len(separators)])
    return "  " + "".join(parts) + "\n"


def test_words_per_chunk_leaves_headroom_under_the_token_limit() -> None:
    assert words_per_chunk(None) is None
    assert words_per_chunk(256) == 153  # 1.5 tokens per word measured, plus headroom
    assert words_per_chunk(512) == 307
    assert words_per_chunk(1) == 1


@pytest.mark.parametrize("bad", [0, -5, True, 2.5])
def test_words_per_chunk_rejects_non_positive_or_non_integer(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="max_tokens"):
        words_per_chunk(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_or_whitespace_text_gives_no_chunks(text: str) -> None:
    assert chunk_text(text, 10, overlap=2) == []
    assert chunk_text(text, None) == []


def test_short_text_is_one_chunk_without_surrounding_whitespace() -> None:
    text = "\n  Hello   wide\tworld.  \n"
    chunks = chunk_text(text, 3, overlap=1)
    assert chunks == [Chunk(index=0, start=3, end=22, text="Hello   wide\tworld.")]
    assert text[chunks[0].start : chunks[0].end] == chunks[0].text


def test_no_limit_keeps_a_long_text_whole() -> None:
    text = _numbered(1000)
    chunks = chunk_text(text, None)
    assert len(chunks) == 1
    assert chunks[0].text == text.strip()


def test_long_text_windows_reproduce_the_original_offsets() -> None:
    text = _numbered(100)
    chunks = chunk_text(text, 20, overlap=5)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert len(_words(chunk.text)) <= 20
    # Windows start every 15 words: 0, 15, ..., 75 (75..94) then 90 (90..99 reaches the end).
    starts = [_words(c.text)[0] for c in chunks]
    assert starts == [f"wörd{i}" for i in range(0, 91, 15)]
    assert _words(chunks[-1].text)[-1] == "wörd99"


def test_consecutive_chunks_share_exactly_overlap_words() -> None:
    text = _numbered(57)
    chunks = chunk_text(text, 10, overlap=3)
    for before, after in pairwise(chunks):
        assert _words(before.text)[-3:] == _words(after.text)[:3]
        assert after.start < before.end  # the shared words are the same characters
    covered = {w for c in chunks for w in _words(c.text)}
    assert covered == set(_words(text))


def test_zero_overlap_splits_into_disjoint_windows() -> None:
    text = _numbered(10)
    chunks = chunk_text(text, 5, overlap=0)
    assert len(chunks) == 2  # not a third window holding nothing new
    assert _words(chunks[0].text) + _words(chunks[1].text) == _words(text)
    assert chunks[0].end < chunks[1].start


def test_last_window_ends_at_the_last_word_and_adds_something_new() -> None:
    text = " ".join(f"w{i}" for i in range(10))
    chunks = chunk_text(text, 5, overlap=2)
    assert [_words(c.text) for c in chunks] == [
        ["w0", "w1", "w2", "w3", "w4"],
        ["w3", "w4", "w5", "w6", "w7"],
        ["w6", "w7", "w8", "w9"],
    ]


def test_text_of_exactly_max_words_is_one_chunk() -> None:
    text = " ".join(f"w{i}" for i in range(8))
    assert len(chunk_text(text, 8, overlap=2)) == 1
    assert len(chunk_text(text + " w8", 8, overlap=2)) == 2


def test_chunk_text_matches_regex_word_offsets() -> None:
    text = "α β\u00a0γ  δ\nε"  # a no-break space is whitespace too
    chunks = chunk_text(text, 2, overlap=1)
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    assert [(c.start, c.end) for c in chunks] == [
        (spans[0][0], spans[1][1]),
        (spans[1][0], spans[2][1]),
        (spans[2][0], spans[3][1]),
        (spans[3][0], spans[4][1]),
    ]


@pytest.mark.parametrize(
    ("max_words", "overlap"),
    [(10, -1), (10, 10), (10, 11), (1, 1), (10, 2.5)],
)
def test_bad_overlap_is_refused_with_a_fix(max_words: int, overlap: int) -> None:
    with pytest.raises(InvalidInputError, match="overlap must be") as caught:
        chunk_text("a few words", max_words, overlap=overlap)
    assert "larger max_words" in str(caught.value)


@pytest.mark.parametrize("max_words", [0, -3, True])
def test_bad_max_words_is_refused(max_words: int) -> None:
    with pytest.raises(InvalidInputError, match="max_words must be"):
        chunk_text("a few words", max_words, overlap=0)


def test_overlap_is_not_checked_when_there_is_no_limit() -> None:
    assert len(chunk_text("a b c", None, overlap=99)) == 1


@pytest.mark.parametrize(("max_words", "overlap"), [(20, 5), (10, 0), (7, 6), (1, 0)])
def test_capped_chunks_are_the_first_windows_of_the_uncapped_ones(max_words: int, overlap: int
                                                                  ) -> None:
    for count in (0, 1, max_words, max_words + 1, 57, 100):
        text = _numbered(count)
        whole = chunk_text(text, max_words, overlap)
        assert count_chunks(text, max_words, overlap) == len(whole)
        for cap in (1, 2, 3, len(whole) or 1, len(whole) + 1):
            assert chunk_text(text, max_words, overlap, max_chunks=cap) == whole[:cap]


def test_count_chunks_counts_the_words_chunk_text_sees() -> None:
    text = "α\u00a0β\u2003γ\x1cδ\u3000ε  ζ\nη"  # no-break, em, file-separator and ideographic spaces
    assert count_chunks(text, 2, 1) == len(chunk_text(text, 2, 1)) == 6
    assert count_chunks("", 2, 1) == 0
    assert count_chunks(text, None) == 1


def test_chunker_says_what_it_cut() -> None:
    text = _numbered(100)
    chunked = Chunker(20, 5, max_chunks=3)(text)
    assert [c.index for c in chunked.chunks] == [0, 1, 2]
    assert chunked.total == 7 and chunked.length == len(text) and chunked.cut
    assert _words(chunked.chunks[-1].text)[-1] == "wörd49"  # 3 windows: words 0 to 49
    whole = Chunker(20, 5, max_chunks=7)(text)
    assert whole.total == 7 and not whole.cut
    assert not Chunker(20, 5, max_chunks=None)(text).cut
    assert not Chunker(None, max_chunks=1)(text).cut


def test_chunker_cuts_agrees_with_what_it_keeps() -> None:
    chunker = Chunker(10, 3, max_chunks=4)  # 4 windows cover 10 + 3 * 7 = 31 words
    for count in (0, 1, 10, 30, 31, 32, 33, 200):
        # One-letter words: as many words as a text of its length can hold.
        for text in (_numbered(count), " ".join(["w"] * count)):
            assert chunker.cuts(text) == chunker(text).cut == (count > 31), count


def test_default_cap_cuts_no_ordinary_document() -> None:
    # About 7,800 words at a 256-token encoder's 153 words per chunk: no real description is cut.
    chunker = Chunker(words_per_chunk(256), 32, DEFAULT_MAX_CHUNKS)
    assert not chunker(_numbered(7_000)).cut
    assert chunker(_numbered(8_000)).cut


@pytest.mark.parametrize("cap", [0, -1, True, 2.5, "64"])
def test_bad_max_chunks_is_refused(cap: object) -> None:
    with pytest.raises(InvalidInputError, match="max_chunks must be"):
        chunk_text("a few words", 2, overlap=0, max_chunks=cap)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_chunks must be"):
        Chunker(2, 0, max_chunks=cap)  # type: ignore[arg-type]
