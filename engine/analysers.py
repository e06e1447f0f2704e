"""How the BM25 index of a text space turns texts into terms, per language, and which language a
space's texts are in.

Every space records a language (``VectorSpace.language``); its analyser is used for the
documents and for every query, so both sides always agree:

- ``en`` (and spaces made before languages were recorded): lower-cased words of two or more
  characters, English stop words removed, Snowball-stemmed: exactly what kinsight always did.
- the other languages PyStemmer covers (``SNOWBALL``): the same words, that language's Snowball
  stemmer, and its stop words where bm25s ships a list (da de es fr it nl no pt ru sv tr); the
  others get none (BM25's IDF already gives words found everywhere almost no weight).
- ``zh``, ``ja``, ``ko``: scripts written without spaces between words, or with syllable blocks
  that stems are not cut from, get overlapping character bigrams of each run of CJK characters
  (Lucene's CJK analyser), the words of other scripts in them as written. No stop words: the
  lists bm25s has are of words, not of bigrams.
- ``multi``: for a space whose texts are in several languages. Words as written (no stemming,
  no stop words) and CJK bigrams: nothing language-specific, so a query in any language is
  analysed the way the documents in its language were. The other way (a language per item)
  would need the language of each query too, which a detector gets wrong too often on a few
  words; a query stemmed for one language then misses the items stemmed for another. ``multi``
  gives up the stemmer's gain, never more.

``detect_language`` picks one of these from a sample of texts with py3langid (langid.py's model,
shipped in the package: no download), English when it is unsure.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError

__all__ = [
    "AUTO",
    "CJK",
    "MULTILINGUAL",
    "SNOWBALL",
    "Analyser",
    "analyser_for",
    "check_language",
    "detect_language",
    "load_bm25s",
]

log = logging.getLogger(__name__)

AUTO = "auto"
MULTILINGUAL = "multi"
# ISO 639-1 code -> PyStemmer (Snowball) algorithm.
SNOWBALL = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german",
    "el": "greek", "en": "english", "eo": "esperanto", "es": "spanish", "et": "estonian",
    "eu": "basque", "fa": "persian", "fi": "finnish", "fr": "french", "ga": "irish",
    "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian", "pl": "polish",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian", "st": "sesotho",
    "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}
# The stop-word lists bm25s ships, by the codes it takes.
_STOPWORDS = {"da", "de", "en", "es", "fr", "it", "nl", "no", "pt", "ru", "sv", "tr"}
CJK = ("ja", "ko", "zh")
LANGUAGES = (*sorted(SNOWBALL), *CJK, MULTILINGUAL)

# Hiragana, katakana (less its middle dot, punctuation), CJK ideographs and their extensions,
# compatibility ideographs, hangul syllables and jamo.
_CJK_CHARS = "\u3040-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff" \
             "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_CJK_RUN = re.compile(f"[{_CJK_CHARS}]+")
_CJK_OR_WORD = re.compile(f"[{_CJK_CHARS}]+|[^\\W{_CJK_CHARS}]{{2,}}")

# Detection: texts read per space, characters read per text, the probability a text's language
# must reach to count, and the share of the counted texts the commonest language must hold.
DETECT_SAMPLE = 200
_DETECT_CHARS = 2000
_CONFIDENT = 0.9
_MAJORITY = 0.6
# py3langid's codes that name a language kinsight knows by another code.
_ALIASES = {"nb": "no", "nn": "no"}


@functools.cache
def load_bm25s() -> Any:
    """bm25s, imported on first use (it brings scipy: most commands never need it)."""
    import bm25s

    # bm25s sets its own logger to DEBUG on import, which prints a line on every index build.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@functools.cache
def _stemmer(algorithm: str) -> Any:
    import Stemmer

    return Stemmer.Stemmer(algorithm)


@dataclass(frozen=True)
class Analyser:
    """Turns texts into BM25 terms for one ``language`` (see the module docstring)."""

    language: str

    @property
    def name(self) -> str:
        """What the BM25 folder records: an index is reused only by the analyser that built it."""
        if self.language in CJK or self.language == MULTILINGUAL:
            return f"{self.language}:cjk-bigrams,words"
        stop = f",stopwords-{self.language}" if self.language in _STOPWORDS else ""
        return f"{self.language}:snowball-{SNOWBALL[self.language]}{stop}"

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """The terms of each text, in order."""
        if self.language in CJK or self.language == MULTILINGUAL:
            return [_cjk_tokens(text) for text in texts]
        return list(self._words(texts, return_ids=False))

    def corpus(self, texts: Sequence[str]) -> Any:
        """The documents' terms as ``bm25s.tokenization.Tokenized`` (term ids and vocabulary),
        which ``bm25s.BM25.index`` takes."""
        if self.language in CJK or self.language == MULTILINGUAL:
            vocab: dict[str, int] = {}
            ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in self.tokens(texts)]
            return load_bm25s().tokenization.Tokenized(ids=ids, vocab=vocab)
        return self._words(texts, return_ids=True)

    def _words(self, texts: Sequence[str], *, return_ids: bool) -> Any:
        stop = self.language if self.language in _STOPWORDS else None
        return load_bm25s().tokenize(list(texts), stopwords=stop,
                                 stemmer=_stemmer(SNOWBALL[self.language]),
                                 return_ids=return_ids, show_progress=False)


def _cjk_tokens(text: str) -> list[str]:
    """Bigrams of each CJK run (a lone character stays a unigram), other words lower-cased.
    NFKC first, so full-width letters and half-width katakana become the usual ones."""
    terms: list[str] = []
    for run in _CJK_OR_WORD.findall(unicodedata.normalize("NFKC", text).lower()):
        if _CJK_RUN.match(run):
            terms.extend([run] if len(run) == 1 else
                         [run[i:i + 2] for i in range(len(run) - 1)])
        else:
            terms.append(run)
    return terms


def check_language(language: str) -> str:
    """``language`` as a space records it (lower case), or an error listing the ones there are."""
    code = language.strip().lower()
    if code != AUTO and code not in LANGUAGES:
        raise InvalidInputError(
            f"no keyword analyser for language {language!r}; use auto (detected from the "
            f"texts), {MULTILINGUAL} (several languages in one space), or one of "
            f"{', '.join(c for c in LANGUAGES if c != MULTILINGUAL)}")
    return code


def analyser_for(language: str | None) -> Analyser:
    """The analyser of a space's recorded language: English for None (spaces made before
    languages were recorded) and for ``auto`` not yet detected (no texts to look at)."""
    if language is None or language == AUTO:
        return Analyser("en")
    return Analyser(check_language(language))


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(texts: Sequence[str]) -> str:
    """The language of a sample of texts (at most ``DETECT_SAMPLE``, spread evenly over them).

    Each text votes for its language when the detector is at least 90% sure; the commonest
    language wins when it holds 60% of the votes. No votes at all: ``en`` (English when unsure).
    No clear winner: ``multi``. A winner kinsight has no analyser for: ``multi`` too, which
    analyses any language the same way.
    """
    step = max(1, len(texts) // DETECT_SAMPLE)
    sample = [t for t in texts[::step][:DETECT_SAMPLE] if t and t.strip()]
    identifier = _identifier()
    votes: Counter[str] = Counter()
    for text in sample:
        code, probability = identifier.classify(text[:_DETECT_CHARS])
        if probability >= _CONFIDENT:
            votes[_ALIASES.get(code, code)] += 1
    if not votes:
        log.info("no language is clear in %d sample texts; analysing them as English",
                 len(sample))
        return "en"
    (top, count), total = votes.most_common(1)[0], sum(votes.values())
    if count < _MAJORITY * total:
        log.info("several languages in the sample (%s); using the %s analyser",
                 ", ".join(f"{c} {n}" for c, n in votes.most_common(5)), MULTILINGUAL)
        return MULTILINGUAL
    if top not in LANGUAGES:
        log.info("texts are in %r, which has no stemmer here; using the %s analyser", top,
                 MULTILINGUAL)
        return MULTILINGUAL
    return top
