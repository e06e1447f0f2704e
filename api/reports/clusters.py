"""The report of a clustering run: what groups there are, how large, what they are about.

It is made from the run's saved tables (``read_cluster_run``), never from a live result, so a page
can be made for any past run, and shows what the store knew when the run was made.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from kinsight.engine import (
    NOISE,
    ClusterResult,
    Collection,
    cluster_groups,
    get_run,
    read_cluster_run,
)

from .page import Section, bar_svg, render_report, scatter_svg, table_html

__all__ = ["cluster_report"]


def cluster_report(collection: Collection, run_id: str | None = None) -> str:
    """The HTML page of a clustering run (the latest one when no id is given)."""
    result = read_cluster_run(collection, run_id)
    run = get_run(collection, result.run_id)
    params = {"run": result.run_id, "collection": collection.name,
              **{k: v for k, v in run.params.items() if v is not None},
              "items": len(result.assignments), "clusters": len(result.clusters),
              "noise": result.noise, "seconds": round(result.seconds, 1)}
    if result.chosen_k is not None:
        params["k chosen"] = f"{result.chosen_k} (highest {result.criterion})"
    sections = [_sizes(result), _groups(collection, result),
                _map(result, run.params.get("projection", "pca")), _members(collection, result)]
    return render_report(f"Clusters of {collection.name}", params, sections,
                         subtitle=f"{result.method} on space {result.space}, run {result.run_id}")


def _sizes(result: ClusterResult) -> Section:
    rows = [{"#": c.cluster, "name": c.name, "size": c.size, "cohesion": c.cohesion,
             "label": c.label, "label score": c.label_score, "terms": list(c.terms)}
            for c in result.clusters]
    columns = ["#", "name", "size", "cohesion", *(["label", "label score"]
                                                  if any(c.label for c in result.clusters) else []),
               "terms"]
    body = Markup("")
    if result.clusters:
        body += bar_svg([f"{c.cluster}: {c.name}" for c in result.clusters],
                        [c.size for c in result.clusters], xlabel="items")
    body += table_html(rows, columns, css_class="clusters")
    if result.k_scores:
        scores = ", ".join(f"k={k}: {s:.3f}" for k, s in sorted(result.k_scores.items()))
        body += Markup(f'<p class="note">{escape(result.criterion or "")} of each k tried: '
                       f"{escape(scores)}</p>")
    if result.noise:
        body += Markup(f'<p class="note">{result.noise} items are noise: in no cluster.</p>')
    return Section("clusters", "Clusters and sizes", body)


def _groups(collection: Collection, result: ClusterResult) -> Section:
    """Clusters of clusters: the run's clusters grouped by their centroids (``cluster_groups``)."""
    names = {c.cluster: c.name for c in result.clusters}
    rows = [{"group": g.name, "items": g.size,
             "clusters": [f"{c}: {names[c]}" for c in g.clusters]}
            for g in cluster_groups(collection, result)]
    if not rows:
        return Section("groups", "Clusters of clusters",
                       Markup('<p class="note">Fewer than three clusters: nothing to group.</p>'))
    body = Markup('<p class="note">The clusters grouped by how alike their centroids are '
                  "(average linkage by cosine), largest group first.</p>")
    return Section("groups", "Clusters of clusters",
                   body + table_html(rows, ["group", "items", "clusters"], css_class="groups"))


def _map(result: ClusterResult, projection: str) -> Section:
    names = {str(c.cluster): f"{c.cluster}: {c.name}" for c in result.clusters}
    names[str(NOISE)] = "noise"
    plot = scatter_svg(result.coordinates, [a.cluster for a in result.assignments], names=names,
                       title="items by UMAP" if projection == "umap"
                       else "items on their first two principal directions")
    return Section("map", "Map of the items", plot)


def _members(collection: Collection, result: ClusterResult) -> Section:
    """Each cluster's distinctive terms and representative items, with all their fields."""
    similarity = {a.id: a.similarity for a in result.assignments}
    fields = collection.fields_of([i for c in result.clusters for i in c.representatives])
    columns = ["id", "similarity", *collection.fields()]
    body = Markup("")
    for c in result.clusters:
        rows: list[dict[str, Any]] = [{"id": i, "similarity": similarity.get(i), **fields.get(i, {})}
                                      for i in c.representatives]
        body += Markup(f'<h3 id="cluster-{c.cluster}">{c.cluster}: {escape(c.name)} '
                       f'<span class="note">({c.size} items)</span></h3>'
                       f'<p class="note">terms: {escape(", ".join(c.terms) or "none")}</p>')
        body += table_html(rows, columns, css_class="members")
    return Section("members", "Representative items", body)
