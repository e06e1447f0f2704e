"""Ranking metrics and the files that feed them, for ``kinsight evaluate`` and the benchmarks.

The metrics are written by hand on purpose: each is a few lines, and the libraries that provide
them cost more than they give (ranx pulls numba and its LLVM build; pytrec_eval needs a C++
compiler at install time). Definitions follow trec_eval so numbers compare with published ones:

- relevance grades are integers; a grade <= 0 means "not relevant";
- nDCG uses the linear gain ``rel / log2(rank + 1)`` (trec_eval's ``ndcg_cut``), not ``2**rel - 1``;
- a document that appears twice in a ranking counts once, at its first position, so a run with
  duplicates cannot score above a perfect one.

File formats (the ones in ``../shared/data/debian`` and ``api/demo_data``):

- qrels: TSV with the header ``qid<TAB>doc_id<TAB>rel``, one judgment per line;
- queries: JSON Lines, one object per line with string keys ``qid`` and ``text`` (others ignored);
- clicks (a search log, ``load_clicks``): JSON Lines of ``{"query", "id"}`` or CSV/TSV with the
  header ``query,id``, one click per line; a query's clicked items are its relevant ones.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from .errors import InvalidInputError, NotFoundError
from .indexed_collection import IndexedCollection
from .options import Progress, check_bounds, option, quiet
from .search import FUSIONS, SearchMode, SearchOptions, search_many

__all__ = [
    "QRELS_HEADER",
    "EvaluationOptions",
    "Query",
    "evaluate_run",
    "evaluate_search",
    "judgments_from_clicks",
    "load_clicks",
    "load_qrels",
    "load_queries",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "score_searches",
]

log = logging.getLogger(__name__)

QRELS_HEADER = ("qid", "doc_id", "rel")
SEARCH_BLOCK = 256  # queries encoded and searched together


@dataclass(frozen=True)
class Query:
    """One evaluation query: its id (the key into the qrels) and its text."""

    qid: str
    text: str


def _numbered_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file, 1-based, without line endings."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8", newline="") as f:
            for number, line in enumerate(f, start=1):
                yield number, line.rstrip("\r\n")
    except FileNotFoundError as e:
        raise NotFoundError(f"file not found: {p}; check the path") from e
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{p} is not UTF-8 text: {e}") from e


def load_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Read relevance judgments: ``{qid: {doc_id: rel}}``.

    The file is TSV whose first line is the header ``qid<TAB>doc_id<TAB>rel``; ``rel`` is an
    integer. Rows with ``rel <= 0`` are kept with grade 0 (judged, not relevant) so a query judged
    only non-relevant is still known. Blank lines are skipped.

    Raises:
        NotFoundError: the file does not exist.
        InvalidInputError: a missing header, a row without three fields, a non-integer ``rel``, an
            empty id, or the same ``(qid, doc_id)`` twice; the message names the file and line.
    """
    qrels: dict[str, dict[str, int]] = {}
    first_seen: dict[tuple[str, str], int] = {}
    header_seen = False
    for number, line in _numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}, line {number}"
        if not header_seen:
            if tuple(f.strip() for f in fields) != QRELS_HEADER:
                raise InvalidInputError(
                    f"{where}: expected the header 'qid<TAB>doc_id<TAB>rel', got {line!r}")
            header_seen = True
            continue
        if len(fields) != 3:
            raise InvalidInputError(
                f"{where}: expected 3 tab-separated fields (qid, doc_id, rel), got {len(fields)}")
        qid, doc_id, rel_text = (f.strip() for f in fields)
        if not qid or not doc_id:
            raise InvalidInputError(f"{where}: qid and doc_id must not be empty")
        try:
            rel = int(rel_text)
        except ValueError as e:
            raise InvalidInputError(
                f"{where}: rel must be an integer, got {rel_text!r}") from e
        key = (qid, doc_id)
        if key in first_seen:
            # Two grades for one pair is a data error; silently keeping either would hide it.
            raise InvalidInputError(
                f"{where}: ({qid}, {doc_id}) is judged twice (first on line {first_seen[key]})")
        first_seen[key] = number
        qrels.setdefault(qid, {})[doc_id] = max(rel, 0)
    if not header_seen:
        raise InvalidInputError(f"{path} is empty; expected the header 'qid<TAB>doc_id<TAB>rel'")
    return qrels


def load_queries(path: str | os.PathLike[str]) -> list[Query]:
    """Read queries from JSON Lines, in file order.

    Each non-blank line is an object with string ``qid`` and ``text``; other keys are ignored.

    Raises:
        NotFoundError: the file does not exist.
        InvalidInputError: a line that is not a JSON object, lacks ``qid`` or ``text``, has a
            non-string or empty value, or repeats a ``qid``; the message names the file and line.
    """
    queries: list[Query] = []
    first_seen: dict[str, int] = {}
    for number, row in _json_lines(path):
        where = f"{path}, line {number}"
        for key in ("qid", "text"):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInputError(f"{where}: '{key}' must be a non-empty string")
        qid, text = str(row["qid"]), str(row["text"])
        if qid in first_seen:
            raise InvalidInputError(
                f"{where}: qid {qid!r} repeats the one on line {first_seen[qid]}")
        first_seen[qid] = number
        queries.append(Query(qid=qid, text=text))
    return queries


def judgments_from_clicks(clicks: Iterable[tuple[str, str]]
                          ) -> tuple[list[Query], dict[str, dict[str, int]]]:
    """Judged queries from clicks, each a ``(query text, clicked item id)``: one query per
    distinct text (case and runs of spaces ignored; qids ``click-1``, ``click-2``, ... in order
    of first appearance), every item clicked for it relevant with grade 1. How often an item was
    clicked does not grade it: counts follow what was shown first, and would teach the ranking
    it already has."""
    qids: dict[str, str] = {}
    queries: list[Query] = []
    qrels: dict[str, dict[str, int]] = {}
    for text, item in clicks:
        key = " ".join(text.split()).casefold()
        if key not in qids:
            qids[key] = f"click-{len(qids) + 1}"
            queries.append(Query(qids[key], " ".join(text.split())))
        qrels.setdefault(qids[key], {})[item] = 1
    return queries, qrels


def load_clicks(path: str | os.PathLike[str]) -> tuple[list[Query], dict[str, dict[str, int]]]:
    """Read clicks (see the module docstring) as judged queries and their judgments
    (``judgments_from_clicks``).

    Raises:
        NotFoundError: the file does not exist.
        InvalidInputError: a line without a non-empty ``query`` and ``id``, a CSV/TSV file
            without those columns, or no click at all; the message names the file and line.
    """
    suffix = Path(path).suffix.lower()
    clicks: list[tuple[str, str]] = []
    if suffix in (".csv", ".tsv"):
        lines = (line for _, line in _numbered_lines(path))
        rows = csv.DictReader(lines, delimiter="\t" if suffix == ".tsv" else ",")
        if rows.fieldnames is None or not {"query", "id"} <= set(rows.fieldnames):
            raise InvalidInputError(f"{path}: expected a header with the columns query and id "
                                    f"(one click per line), got {rows.fieldnames}")
        numbered: Iterable[tuple[int, dict[str, object]]] = (
            (rows.line_num, row) for row in rows)
    else:
        numbered = _json_lines(path)
    for number, row in numbered:
        text, item = row.get("query"), row.get("id")
        if not isinstance(text, str) or not text.strip() or not isinstance(item, str) or not item:
            raise InvalidInputError(f"{path}, line {number}: a click needs a non-empty 'query' "
                                    "(what was searched) and 'id' (the item clicked)")
        clicks.append((text, item))
    if not clicks:
        raise InvalidInputError(f"{path} holds no clicks; write one {{\"query\", \"id\"}} per line")
    return judgments_from_clicks(clicks)


def _json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, object]]]:
    """The non-blank lines of a JSON Lines file as objects, with their line numbers."""
    for number, line in _numbered_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{path}, line {number}: not valid JSON: {e.msg}") from e
        if not isinstance(row, dict):
            raise InvalidInputError(f"{path}, line {number}: expected a JSON object, got "
                                    f"{type(row).__name__}")
        yield number, row


def _check_k(k: int) -> None:
    # bool is an int subclass; k=True would silently mean k=1.
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")


def _first_occurrences(ranked: Sequence[str], k: int) -> list[str]:
    """The first ``k`` distinct ids of ``ranked``, in order (duplicates keep their first rank)."""
    seen: set[str] = set()
    out: list[str] = []
    for doc_id in ranked:
        if len(out) == k:
            break
        if doc_id not in seen:
            seen.add(doc_id)
            out.append(doc_id)
    return out


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain of the top ``k`` of ``ranked``.

    Linear gain as in trec_eval: ``DCG = sum(rel_i / log2(i + 1))`` over ranks ``i = 1..k``, divided
    by the DCG of the ideal ranking (all grades of ``relevant`` sorted descending, cut at ``k``).
    Grades <= 0 give no gain. Returns 0.0 when ``relevant`` holds no positive grade.

    Args:
        ranked: document ids, best first.
        relevant: graded judgments ``{doc_id: rel}`` of one query.
        k: the cut-off, >= 1.
    """
    _check_k(k)
    ideal = sorted((r for r in relevant.values() if r > 0), reverse=True)[:k]
    if not ideal:
        return 0.0
    idcg = sum(rel / math.log2(rank + 1) for rank, rel in enumerate(ideal, start=1))
    dcg = 0.0
    for rank, doc_id in enumerate(_first_occurrences(ranked, k), start=1):
        rel = relevant.get(doc_id, 0)
        if rel > 0:
            dcg += rel / math.log2(rank + 1)
    return dcg / idcg


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Fraction of the relevant documents (grade > 0) found in the top ``k`` of ``ranked``.

    Returns 0.0 when ``relevant`` holds no positive grade.
    """
    _check_k(k)
    positives = {doc_id for doc_id, rel in relevant.items() if rel > 0}
    if not positives:
        return 0.0
    found = positives.intersection(_first_occurrences(ranked, k))
    return len(found) / len(positives)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document (grade > 0) in the top ``k``, else 0.0."""
    _check_k(k)
    for rank, doc_id in enumerate(_first_occurrences(ranked, k), start=1):
        if relevant.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    ks: Sequence[int] = (10, 100),
) -> dict[str, float]:
    """Average ranking metrics of a run over the judged queries.

    Recall is reported at every cut-off in ``ks``; nDCG and MRR at the smallest one only, since
    those are the figures the benchmarks compare (the defaults give ``ndcg@10``, ``recall@10``,
    ``recall@100``, ``mrr@10``). ``queries`` is the number of queries averaged over.

    The average runs over the queries of ``qrels`` with at least one relevant document (grade > 0).
    A query that is in ``qrels`` but missing from ``run`` scores 0 on every metric, so a search that
    fails on some queries cannot look better than one that answers them all. Queries of ``run``
    absent from ``qrels`` are ignored.

    Args:
        run: ``{qid: [doc_id, ...]}``, each ranking best first.
        qrels: ``{qid: {doc_id: rel}}`` as from :func:`load_qrels`.
        ks: cut-offs, each >= 1.

    Raises:
        InvalidInputError: ``ks`` is empty or holds a non-positive value, or no query in ``qrels``
            has a relevant document.
    """
    if not ks:
        raise InvalidInputError("ks must name at least one cut-off, e.g. (10, 100)")
    for k in ks:
        _check_k(k)
    cutoffs = sorted(set(ks))
    top_k = cutoffs[0]
    judged = {qid: rels for qid, rels in qrels.items() if any(r > 0 for r in rels.values())}
    if not judged:
        raise InvalidInputError(
            "no query in the qrels has a relevant document (rel > 0); nothing to evaluate")

    keys = [f"ndcg@{top_k}", *(f"recall@{k}" for k in cutoffs), f"mrr@{top_k}"]
    totals = dict.fromkeys(keys, 0.0)
    missing = 0
    for qid, rels in judged.items():
        ranked = run.get(qid)
        if ranked is None:
            missing += 1
            continue
        totals[f"ndcg@{top_k}"] += ndcg_at_k(ranked, rels, top_k)
        for k in cutoffs:
            totals[f"recall@{k}"] += recall_at_k(ranked, rels, k)
        totals[f"mrr@{top_k}"] += mrr_at_k(ranked, rels, top_k)
    if missing:
        log.warning("%d of %d judged queries have no ranking in the run; they score 0",
                    missing, len(judged))

    n = len(judged)
    result = {key: total / n for key, total in totals.items()}
    result["queries"] = float(n)
    return result


@dataclass(frozen=True)
class EvaluationOptions:
    """What ``evaluate_search`` runs: each of ``modes``, the fusing ones (``hybrid``, ``auto``)
    once per fusion of ``fusions`` (names of ``search.FUSIONS``), ranking ``depth`` items per
    query (the cut-off of the second recall, beside @10)."""

    modes: Sequence[SearchMode] = option(("bm25", "dense", "hybrid"), help="Search modes scored.")
    fusions: Sequence[str] = option(tuple(FUSIONS), help="Fusions scored in the hybrid and auto "
                                    "modes, each as MODE:FUSION; the first is the default.")
    depth: int = option(100, ge=1, help="Items ranked per query: the second recall's cut-off.")
    tuned: bool = option(False, help="Also score the tuned searches (`kinsight tune`): the "
                         "default mode and dense, each with the space's tuned settings.")

    def __post_init__(self) -> None:
        check_bounds(self)
        unknown = [m for m in self.modes if m not in get_args(SearchMode)]
        if not self.modes or unknown:
            raise InvalidInputError(f"modes must name search modes among "
                                    f"{', '.join(get_args(SearchMode))}; got {list(self.modes)!r}")
        if not self.fusions or any(f not in FUSIONS for f in self.fusions):
            raise InvalidInputError(f"fusions must name fusions among {', '.join(FUSIONS)}; "
                                    f"got {list(self.fusions)!r}")

    def runs(self) -> dict[str, SearchOptions]:
        """Each search to score by its name: the mode, ``MODE:FUSION`` for a fusing mode, and
        with ``tuned`` the names ``kinsight tune`` reports them under (``tuned``, ``dense, tuned``)."""
        runs = {f"{mode}:{name}" if mode in ("hybrid", "auto") else mode: SearchOptions(
                    k=self.depth, mode=mode, fusion=FUSIONS[name], return_fields=())
                for mode in self.modes
                for name in (self.fusions if mode in ("hybrid", "auto") else self.fusions[:1])}
        if self.tuned:
            runs["tuned"] = SearchOptions(k=self.depth, return_fields=(), tuned=True)
            runs["dense, tuned"] = SearchOptions(k=self.depth, mode="dense", return_fields=(),
                                                 tuned=True)
        return runs


def evaluate_search(
    collection: IndexedCollection,
    queries: Sequence[Query],
    qrels: Mapping[str, Mapping[str, int]],
    options: EvaluationOptions | None = None,
    *,
    progress: Progress = quiet,
) -> dict[str, dict[str, float]]:
    """Run every query in each search mode (each fusing one once per fusion) and score the
    rankings (see ``evaluate_run``), keyed as ``EvaluationOptions.runs`` names them;
    ``progress`` is told of the queries done, over all the runs, the run under way as stage."""
    return score_searches(collection, queries, qrels, (options or EvaluationOptions()).runs(),
                          progress=progress)


def score_searches(
    collection: IndexedCollection,
    queries: Sequence[Query],
    qrels: Mapping[str, Mapping[str, int]],
    runs: Mapping[str, SearchOptions],
    *,
    progress: Progress = quiet,
) -> dict[str, dict[str, float]]:
    """Score each named search of ``runs`` on the ``queries`` (see ``evaluate_run``; the second
    recall's cut-off is the search's ``k``)."""
    results: dict[str, dict[str, float]] = {}
    total, done = len(queries) * len(runs), 0
    asked = {q.qid for q in queries}
    for name, search_options in runs.items():
        run: dict[str, list[str]] = {}
        for start in range(0, len(queries), SEARCH_BLOCK):
            chunk = queries[start:start + SEARCH_BLOCK]
            for query, hits in zip(chunk, search_many(collection, [q.text for q in chunk],
                                                      search_options), strict=True):
                run[query.qid] = [h.id for h in hits]
            done += len(chunk)
            progress(done, total, name)
        results[name] = evaluate_run(run, {q: r for q, r in qrels.items() if q in asked},
                                     ks=(10, search_options.k))
    return results
