"""A collection: items with user ids, metadata as real DuckDB columns, and named vector spaces.

``Collection`` is the facade users hold: the data and its indexes (``IndexedCollection``), plus one
method per operation, each a line that hands the collection to the operation's module. Nothing in
the engine imports this module but ``store``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .clustering import ClusterOptions, ClusterResult, cluster
from .indexed_collection import IndexedCollection, Item
from .interactions import Interaction, add_interactions
from .options import Progress, options_with, quiet
from .recommend import RecommendOptions, WeightedExample, recommend
from .search import Hit, Query, SearchOptions, search, search_many
from .storage import CollectionTables

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
