"""Clustering: find the groups among a collection's items, name them, save the run."""

from __future__ import annotations

import time

from fastapi import APIRouter

from kinsight.engine import ClusterOptions, cluster

from .deps import CollectionDep
from .models import ErrorOut
from .models_analysis import ClusterOut, ClusterRequest, ClusterResponse

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}", tags=["analysis"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("/cluster", summary="Cluster the items, name each cluster, save the run")
def cluster_collection(body: ClusterRequest, collection: CollectionDep) -> ClusterResponse:
    """Runs k-means (k given, or chosen by silhouette) or HDBSCAN over the items the filter
    selects. The response has the clusters; each item's cluster and its place on the 2-D map are
    in the run's tables ``assignments`` and ``map`` (``GET /collections/{name}/runs/{run_id}/...``)."""
    started = time.perf_counter()
    result = cluster(collection, body.to_options(ClusterOptions))
    return ClusterResponse(
        run_id=result.run_id, method=result.method, items=len(result.assignments),
        noise=result.noise, criterion=result.criterion, k_scores=result.k_scores,
        clusters=[ClusterOut(cluster=c.cluster, name=c.name, terms=list(c.terms), size=c.size,
                             cohesion=c.cohesion, representatives=list(c.representatives),
                             label=c.label, label_score=c.label_score) for c in result.clusters],
        took_ms=(time.perf_counter() - started) * 1000)
