"""kinsight's engine: stores, collections, vector spaces, FAISS indexes and the query layer.

It deals in vectors and never imports torch or the encoders themselves; those are found through
the ``kinsight.encoders`` entry-point group (see ``encoders``).
"""

from __future__ import annotations

from .anomalies import AnomalyOptions, AnomalyResult, NewVectors, ReferenceModel, fit_reference
from .batch import Answer, RecommendCall, SearchCall
from .cluster_hierarchy import ClusterGroup, cluster_groups
from .clustering import NOISE, ClusterOptions, ClusterResult, cluster, read_cluster_run
from .collection import Collection
from .drift import DriftRow, drift, drift_by
from .embedding import Embeddings
from .encoders import (
    DEFAULT_TEXT_ENCODER,
    Encoder,
    EncoderInfo,
    available_encoders,
    load_encoder,
)
from .errors import (
    AlreadyExistsError,
    DimensionMismatchError,
    EncoderError,
    EncoderMismatchError,
    FilterError,
    ImageFileError,
    InvalidInputError,
    KinsightError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreLockedError,
    WorkerLostError,
)
from .evaluation import EvaluationOptions, judgments_from_clicks, load_clicks, load_qrels, load_queries
from .evaluation import Query as JudgedQuery
from .filters import And, Condition, Filter, Not, Or, SqlWhere
from .head_training import HeadOptions, HeadReport, HeadResult, ItemPrediction
from .index_policy import IndexSpec, choose_index
from .indexed_collection import FieldUpdate, IndexedCollection, Item
from .interactions import (
    Interaction,
    ProfilePolicy,
    add_interactions,
    count_interactions,
    count_users,
    user_profiles,
)
from .mismatch import (
    DuplicateOptions,
    DuplicatesResult,
    LabelMismatchOptions,
    LabelMismatchResult,
    PairMismatchOptions,
    PairMismatchResult,
)
from .options import Progress, option_default, within_bounds
from .probes import ClassReport, ProbeOptions, ProbeResult
from .recommend import (
    RECOMMEND_MODES,
    STRATEGIES,
    RecommendOptions,
    WeightedExample,
    recommend,
    recommend_users,
)
from .runs import RunInfo, get_run, list_runs, read_run_table, save_run
from .saved_heads import HeadInfo, HeadPrediction, PredictOptions, PredictResult
from .schema import validate_collection_name, validate_space_name
from .search import FUSIONS, ById, ChunkMatch, Fusion, Hit, Query, SearchMode, SearchOptions
from .spaces import VectorSpace
from .storage import DATABASE_FILE
from .store import Store
from .tuning import TuneEpoch, TuneOptions, TuneReport
from .zero_shot import ZeroShotOptions, ZeroShotResult

__all__ = [
    "DATABASE_FILE",
    "DEFAULT_TEXT_ENCODER",
    "FUSIONS",
    "NOISE",
    "RECOMMEND_MODES",
    "STRATEGIES",
    "AlreadyExistsError",
    "And",
    "AnomalyOptions",
    "AnomalyResult",
    "Answer",
    "ById",
    "ChunkMatch",
    "ClassReport",
    "ClusterGroup",
    "ClusterOptions",
    "ClusterResult",
    "Collection",
    "Condition",
    "DimensionMismatchError",
    "DriftRow",
    "DuplicateOptions",
    "DuplicatesResult",
    "Embeddings",
    "Encoder",
    "EncoderError",
    "EncoderInfo",
    "EncoderMismatchError",
    "EvaluationOptions",
    "FieldUpdate",
    "Filter",
    "FilterError",
    "Fusion",
    "HeadInfo",
    "HeadOptions",
    "HeadPrediction",
    "HeadReport",
    "HeadResult",
    "Hit",
    "ImageFileError",
    "IndexSpec",
    "IndexedCollection",
    "Interaction",
    "InvalidInputError",
    "Item",
    "ItemPrediction",
    "JudgedQuery",
    "KinsightError",
    "LabelMismatchOptions",
    "LabelMismatchResult",
    "NewVectors",
    "Not",
    "NotFoundError",
    "Or",
    "PairMismatchOptions",
    "PairMismatchResult",
    "PredictOptions",
    "PredictResult",
    "ProbeOptions",
    "ProbeResult",
    "ProfilePolicy",
    "Progress",
    "Query",
    "ReadOnlyStoreError",
    "RecommendCall",
    "RecommendOptions",
    "ReferenceModel",
    "RunInfo",
    "SearchCall",
    "SearchMode",
    "SearchOptions",
    "SqlWhere",
    "Store",
    "StoreLockedError",
    "TuneEpoch",
    "TuneOptions",
    "TuneReport",
    "VectorSpace",
    "WeightedExample",
    "WorkerLostError",
    "ZeroShotOptions",
    "ZeroShotResult",
    "add_interactions",
    "available_encoders",
    "choose_index",
    "cluster",
    "cluster_groups",
    "count_interactions",
    "count_users",
    "drift",
    "drift_by",
    "fit_reference",
    "get_run",
    "judgments_from_clicks",
    "list_runs",
    "load_clicks",
    "load_encoder",
    "load_qrels",
    "load_queries",
    "option_default",
    "read_cluster_run",
    "read_run_table",
    "recommend",
    "recommend_users",
    "save_run",
    "user_profiles",
    "validate_collection_name",
    "validate_space_name",
    "within_bounds",
]
