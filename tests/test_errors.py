"""Library errors reach the caller as kinsight errors (``errors.translated``), in the one tree."""

from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import ImageFileError, InvalidInputError, KinsightError
from kinsight.engine.errors import FilterError, translated
from kinsight.engine.index_policy import IndexSpec
from kinsight.engine.vector_index import VectorIndex


def test_a_faiss_failure_is_a_kinsight_error_naming_the_index():
    index = VectorIndex(IndexSpec("IVF4,Flat", nprobe=1), dim=8, metric="cosine", fingerprint="f")
    vectors = np.eye(8, dtype=np.float32)
    with pytest.raises(KinsightError, match=r"FAISS index IVF4,Flat \(dim 8, cosine\):"):
        index.add(np.arange(8), vectors)  # an IVF index must be trained before vectors go in


def test_an_unknown_factory_string_is_a_kinsight_error():
    with pytest.raises(KinsightError, match="FAISS index NoSuchIndex"):
        VectorIndex(IndexSpec("NoSuchIndex"), dim=8, metric="l2", fingerprint="f")


def test_other_runtime_errors_are_not_swallowed():
    with pytest.raises(RuntimeError, match="not a library error"), translated("anything"):
        raise RuntimeError("not a library error")


def test_duckdb_errors_become_the_callers_kind():
    import duckdb

    with pytest.raises(FilterError, match=r"^the filter: .*"), translated("the filter",
                                                                           caller=FilterError):
        duckdb.sql("SELECT no_such_column FROM (SELECT 1 AS a)").fetchall()


def test_an_unreadable_picture_is_bad_input_with_its_fix():
    error = ImageFileError("the file is empty (0 bytes)", "re-export the image or remove it")
    assert isinstance(error, InvalidInputError)
    assert error.fix == "re-export the image or remove it" and "empty" in str(error)
