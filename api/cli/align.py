"""``kinsight align``: train an adapter that maps an image space and a text space into one shared
space (the CLIP recipe on two frozen encoders), then search pictures by text through it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from tqdm import tqdm

from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    StoreOpt,
    app,
    console,
    err,
    one_of,
    open_store,
    pick_collection,
)

__all__ = ["align_command", "align_report_to_dict"]


@app.command("align")
def align_command(
    from_space: Annotated[str, typer.Option("--from", help="One space of the pairs, e.g. image.")],
    to_space: Annotated[str, typer.Option("--to", help="The other space, e.g. caption.")],
    name: Annotated[str, typer.Option(help="Adapter name: its spaces use adapter:NAME:image and "
                                           "adapter:NAME:text.")],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    method: Annotated[str, typer.Option(
        help="infonce (contrastive, learned temperature) | ridge (closed-form baseline) | "
             "random (a random projection: the floor).")] = "infonce",
    dim: Annotated[int, typer.Option(min=2, help="Dimension of the shared space (infonce, "
                                                 "random; ridge maps into the text space).")] = 256,
    validation: Annotated[float, typer.Option(
        help="Share of caption groups held out to stop training.")] = 0.15,
    validation_where: Annotated[str | None, typer.Option(
        help="Hold out the items this SQL WHERE matches instead, e.g. \"split = 'validation'\".")
    ] = None,
    where: Annotated[str | None, typer.Option(
        help="Use only the items this SQL WHERE matches, e.g. \"split != 'test'\".")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the initial weights, batches.")] = 0,
    max_epochs: Annotated[int, typer.Option(min=1, help="InfoNCE: most epochs.")] = 300,
    patience: Annotated[int, typer.Option(
        min=1, help="InfoNCE: stop after this many epochs without a better validation recall.")
    ] = 15,
    folder: Annotated[Path | None, typer.Option(
        envvar="KINSIGHT_ADAPTERS",
        help="Folder the adapter is saved in (default ~/.kinsight/adapters).")] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite an adapter of the same name.")] = False,
    plot: Annotated[Path | None, typer.Option(
        help="Write the training curve to this .svg or .png file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train an adapter on the items that have vectors in both spaces (a picture and its
    caption), save it, and print validation recall@1/5/10 in both directions before (a random
    projection) and after training.

    Then build spaces on it, e.g. ingest with --encoder adapter:NAME:image and --text-encoder
    adapter:NAME:text, and search pictures by text: kinsight search "a red car" --space image.
    """
    chosen_method = one_of("method", method, ("infonce", "ridge", "random"))
    with open_store(store, read_only=True) as opened:
        coll = pick_collection(opened, collection)
        image, text = sorted((from_space, to_space),
                             key=lambda s: coll.space(s).encoder.modality != "image")
        from kinsight.indexers.adapters import adapter_target, save_adapter

        adapter_target(name, folder, replace=replace)  # a taken name fails before training
        # This brings torch (seconds): imported once the store and the names are known good.
        from kinsight.indexers.align import AlignOptions, EpochStats, align_collection

        options = AlignOptions(method=chosen_method, dim=dim, validation=validation,
                               validation_where=validation_where, where=where, seed=seed,
                               max_epochs=max_epochs, patience=patience)
        with tqdm(total=max_epochs, desc=f"align {name}", unit=" epochs", disable=as_json or
                  options.method != "infonce", dynamic_ncols=True) as bar:
            def progress(stats: EpochStats) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats.loss:.3f}", recall=f"{stats.validation_recall:.3f}")

            report = align_collection(coll, image, text, name, options, on_epoch=progress)
        saved = save_adapter(report.adapter, folder, replace=replace)
    if plot is not None and report.curve:
        _plot_curve(report, plot)
    if as_json:
        console.print_json(data={**align_report_to_dict(report), "path": str(saved)})
        return
    _print_report(report, saved)
    if plot is not None:
        err.print(f"training curve: {plot}" if report.curve else
                  f"no training curve for method {method}: nothing written to {plot}")


def align_report_to_dict(report: Any) -> dict[str, Any]:
    config = report.adapter.config
    return {"adapter": asdict(config), "specs": [f"adapter:{config.name}:image",
                                                 f"adapter:{config.name}:text"],
            "train_items": report.train_items, "validation_items": report.validation_items,
            "before": report.before.as_dict(), "after": report.after.as_dict(),
            "best_epoch": report.best_epoch, "stopped_epoch": report.stopped_epoch,
            "curve": [asdict(e) for e in report.curve]}


def _print_report(report: Any, saved: Path) -> None:
    config = report.adapter.config
    table = Table(title=f"adapter {config.name} ({config.method}, {config.dim} dims): validation "
                        f"recall, {report.validation_items} held-out pairs "
                        f"({report.train_items} trained on)", title_justify="left")
    table.add_column("direction")
    for k in report.after.text_to_image:
        table.add_column(f"R@{k} before", justify="right")
        table.add_column(f"R@{k} after", justify="right")
    for label, attr in (("text → image", "text_to_image"), ("image → text", "image_to_text")):
        before, after = getattr(report.before, attr), getattr(report.after, attr)
        table.add_row(label, *(f"{v:.3f}" for k in after for v in (before[k], after[k])))
    console.print(table)
    console.print("before = a random projection of both sides; after = the trained adapter",
                  style="dim")
    if report.curve:
        step = max(1, len(report.curve) // 10)
        curve = Table("epoch", "loss", "temperature", "validation recall", title="training curve",
                      title_justify="left")
        for stats in report.curve[::step] + ([report.curve[-1]] if len(report.curve) % step != 1
                                             else []):
            curve.add_row(str(stats.epoch), f"{stats.loss:.4f}", f"{stats.temperature:.4f}",
                          f"{stats.validation_recall:.3f}")
        console.print(curve)
        console.print(f"kept epoch {report.best_epoch}; stopped at epoch {report.stopped_epoch}")
    console.print(f"saved {saved} (fingerprint {config.fingerprint}, temperature "
                  f"{config.temperature:.4f}); encoders: adapter:{config.name}:image, "
                  f"adapter:{config.name}:text", highlight=False)


def _plot_curve(report: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: draw to a file only
    import matplotlib.pyplot as plt

    fig, loss_axis = plt.subplots(figsize=(6.5, 3.2))
    epochs = [e.epoch for e in report.curve]
    loss_axis.plot(epochs, [e.loss for e in report.curve], color="tab:blue", label="train loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("InfoNCE loss", color="tab:blue")
    recall_axis = loss_axis.twinx()
    recall_axis.plot(epochs, [e.validation_recall for e in report.curve], color="tab:orange")
    recall_axis.set_ylabel("mean validation recall", color="tab:orange")
    if report.best_epoch:
        recall_axis.axvline(report.best_epoch, color="grey", linestyle=":", linewidth=1)
    loss_axis.set_title(f"adapter {report.adapter.config.name}: training curve")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
