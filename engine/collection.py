"""A collection: items with user ids, metadata as real DuckDB columns, and named vector spaces.

``Collection`` is the facade users hold: the data and its indexes (``IndexedCollection``), plus one
method per operation, each a line that hands the collection to the operation's module. Nothing in
the engine imports this module but ``store``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .anomalies import AnomalyOptions, AnomalyResult, NewVectors, ReferenceModel, anomalies
from .batch import Answer, RecommendCall, SearchCall, recommend_batch, search_batch
from .clustering import ClusterOptions, ClusterResult, cluster
from .embedding import Embeddings, embed_in_space
from .encoders import Role
from .evaluation import EvaluationOptions, evaluate_search
from .evaluation import Query as JudgedQuery
from .filters import FilterInput
from .head_training import HeadOptions, HeadResult, train_head
from .indexed_collection import IndexedCollection, Item
from .interactions import Interaction, add_interactions
from .mismatch import (
    DuplicateOptions,
    DuplicatesResult,
    LabelMismatchOptions,
    LabelMismatchResult,
    PairMismatchOptions,
    PairMismatchResult,
    label_mismatch,
    near_duplicates,
    pair_mismatch,
)
from .options import Progress, options_with, quiet
from .probes import ProbeOptions, ProbeResult, train_probe
from .recommend import RecommendOptions, WeightedExample, recommend
from .saved_heads import (
    EncodeInputs,
    HeadInfo,
    PredictOptions,
    PredictResult,
    list_heads,
    predict,
)
from .search import Hit, Query, SearchOptions, search, search_many
from .storage import CollectionTables
from .tuning import TuneOptions, TuneReport, tune
from .zero_shot import ZeroShotOptions, ZeroShotResult, zero_shot

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Collection", "Item"]


class Collection(IndexedCollection):
    """Items of one collection. Get it from ``Store.collection`` or ``Store.create_collection``."""

    def __init__(self, store: Store, tables: CollectionTables) -> None:
        super().__init__(tables, store.index_folder(tables.name, tables.uid), store.memory_budget)
        self.store = store

    def search(self, query: Query, options: SearchOptions | None = None, /,
               **changes: Any) -> list[Hit]:
        """Search by text, vector or ``ById``: ``mode`` auto (hybrid for text, dense for vectors),
        dense, bm25 or hybrid; options as a ``SearchOptions`` or as its fields (``k=5``,
        ``mode="bm25"``); see ``engine.search``."""
        return search(self, query, options_with(SearchOptions, options, changes))

    def search_many(self, queries: Sequence[Query], options: SearchOptions | None = None, /, *,
                    exclude: Sequence[Iterable[str]] | None = None, **changes: Any
                    ) -> list[list[Hit]]:
        """Many queries in one encoder batch and one index call: one hit list per query."""
        return search_many(self, queries, options_with(SearchOptions, options, changes),
                           exclude=exclude)

    def embed(self, inputs: Sequence[Any], space: str | None = None, *,
              role: Role = "document") -> Embeddings:
        """The vectors ``space`` would store for texts or decoded pictures, one per input
        (a long text's beginning); see ``engine.embedding``."""
        return embed_in_space(self.space(space), inputs, role=role)

    def search_batch(self, calls: Sequence[SearchCall]) -> list[Answer]:
        """Searches each with its own options, sharing encoder batches and index calls where
        they can; one answer per call, in order: its hits or its error; see ``engine.batch``."""
        return search_batch(self, calls)

    def recommend_batch(self, calls: Sequence[RecommendCall]) -> list[Answer]:
        """Recommendations each with its own examples and options; one answer per call, in
        order: its hits or its error; see ``engine.batch``."""
        return recommend_batch(self, calls)

    def recommend(
        self, positive: Sequence[WeightedExample] = (), negative: Sequence[WeightedExample] = (),
        options: RecommendOptions | None = None, /, *, user: str | None = None, **changes: Any,
    ) -> list[Hit]:
        """Items like the ``positive`` examples (ids, vectors, or ``(example, weight)``) and
        unlike the ``negative`` ones, and/or for ``user``; options as a ``RecommendOptions`` or
        as its fields (``k=5``, ``strategy="best_score"``); see ``engine.recommend``."""
        return recommend(self, positive, negative, user=user,
                         options=options_with(RecommendOptions, options, changes))

    def add_interactions(self, interactions: Iterable[Interaction]) -> int:
        """Store user interactions (views, likes, ...) for ``recommend(user=...)``."""
        return add_interactions(self, interactions)

    def cluster(self, options: ClusterOptions | None = None, /, *, progress: Progress = quiet,
                **changes: Any) -> ClusterResult:
        """Cluster the items and name the clusters; options as a ``ClusterOptions`` or as its
        fields (``k=8, method="hdbscan"``); see ``engine.clustering``."""
        return cluster(self, options_with(ClusterOptions, options, changes), progress=progress)

    def anomalies(
        self, options: AnomalyOptions | None = None, /, *,
        reference: FilterInput | IndexedCollection = None,
        targets: FilterInput | NewVectors = None, model: ReferenceModel | None = None,
        **changes: Any,
    ) -> AnomalyResult:
        """Score ``targets`` against ``reference`` (or a fitted ``model``) and flag the outliers;
        options as an ``AnomalyOptions`` or its fields (``method="lof", n_neighbors=10``); see
        ``engine.anomalies``."""
        return anomalies(self, options_with(AnomalyOptions, options, changes),
                         reference=reference, targets=targets, model=model)

    def pair_mismatch(self, a: str, b: str, options: PairMismatchOptions | None = None, /,
                      **changes: Any) -> PairMismatchResult:
        """How badly each item's space ``a`` fits its space ``b``, against impostor pairs;
        options as a ``PairMismatchOptions`` or its fields; see ``engine.mismatch.pairs``."""
        return pair_mismatch(self, a, b, options_with(PairMismatchOptions, options, changes))

    def label_mismatch(self, label_field: str, options: LabelMismatchOptions | None = None, /,
                       **changes: Any) -> LabelMismatchResult:
        """Items whose ``label_field`` disagrees with their neighbours' (and a probe's);
        options as a ``LabelMismatchOptions`` or its fields; see ``engine.mismatch.labels``."""
        return label_mismatch(self, label_field,
                              options_with(LabelMismatchOptions, options, changes))

    def near_duplicates(self, options: DuplicateOptions | None = None, /,
                        **changes: Any) -> DuplicatesResult:
        """Groups of exact and near copies, each with a representative; options as a
        ``DuplicateOptions`` or its fields; see ``engine.mismatch.duplicates``."""
        return near_duplicates(self, options_with(DuplicateOptions, options, changes))

    def train_probe(self, label_field: str, options: ProbeOptions | None = None, /,
                    **changes: Any) -> ProbeResult:
        """A linear probe on ``label_field``: cross-validated report, predictions, doubts;
        options as a ``ProbeOptions`` or its fields; see ``engine.probes``."""
        return train_probe(self, label_field, options_with(ProbeOptions, options, changes))

    def train_head(self, label_field: str, options: HeadOptions | None = None, /,
                   **changes: Any) -> ProbeResult | HeadResult:
        """A head of any kind (logistic, knn, multilabel, regression; ``kind="auto"`` by the
        field's type) on ``label_field``, judged out of fold and saved; options as a
        ``HeadOptions`` or its fields; see ``engine.head_training``."""
        return train_head(self, label_field, options_with(HeadOptions, options, changes))

    def predict(self, head: str, inputs: Sequence[Any], options: PredictOptions | None = None, /,
                *, encode: EncodeInputs | None = None, **changes: Any) -> PredictResult:
        """What the saved ``head`` (see ``train_head``) predicts for new texts or pictures
        (``encode``: the caller's encoding of them); options as a ``PredictOptions`` or its
        fields (``top=5``); see ``engine.saved_heads``."""
        return predict(self, head, inputs, options_with(PredictOptions, options, changes),
                       encode=encode)

    def heads(self) -> list[HeadInfo]:
        """The heads saved with the collection, by name."""
        return list_heads(self)

    def zero_shot(self, labels: Sequence[str], options: ZeroShotOptions | None = None, /,
                  **changes: Any) -> ZeroShotResult:
        """Each item labelled with the closest of ``labels`` as prompts; options as a
        ``ZeroShotOptions`` or its fields; see ``engine.zero_shot``."""
        return zero_shot(self, labels, options_with(ZeroShotOptions, options, changes))

    def evaluate_search(
        self, queries: Sequence[JudgedQuery], qrels: Mapping[str, Mapping[str, int]],
        options: EvaluationOptions | None = None, /, *, progress: Progress = quiet,
        **changes: Any,
    ) -> dict[str, dict[str, float]]:
        """nDCG, recall and MRR of each search mode on judged ``queries``; options as an
        ``EvaluationOptions`` or its fields (``modes=("dense",)``); see ``engine.evaluation``."""
        return evaluate_search(self, queries, qrels,
                               options_with(EvaluationOptions, options, changes), progress=progress)

    def tune(
        self, queries: Sequence[JudgedQuery], qrels: Mapping[str, Mapping[str, int]],
        options: TuneOptions | None = None, /, *, progress: Progress = quiet, **changes: Any,
    ) -> TuneReport:
        """Fit a text space's fusion and query adapter to judged ``queries`` and save them for
        ``search(..., tuned=True)``; options as a ``TuneOptions`` or its fields (``seed=1``);
        see ``engine.tuning``."""
        return tune(self, queries, qrels, options_with(TuneOptions, options, changes),
                    progress=progress)
