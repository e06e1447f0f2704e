"""``kinsight model prepare``: choose the fastest CPU variant of a text model on this machine."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kinsight.engine import DEFAULT_TEXT_ENCODER

from .common import JsonOpt, app, console, err, fail

__all__ = ["model_app"]

model_app = typer.Typer(help="Prepare the text models: export their fast CPU variants and time "
                             "them on this machine.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("prepare")
def prepare(
    path: Annotated[Path | None, typer.Argument(
        help="JSONL, CSV, TSV or Parquet file (or folder of .txt/.md files) whose texts the "
             "variants are timed on: your own data. Default: the bundled Debian sample.")] = None,
    encoder: Annotated[str, typer.Option(help="Encoder spec, SCHEME:MODEL.")] = DEFAULT_TEXT_ENCODER,
    text_field: Annotated[list[str] | None, typer.Option(
        help="Field(s) holding the text; repeat for several. Default: text.")] = None,
    id_field: Annotated[str, typer.Option(help="Field holding each record's id.")] = "id",
    sample: Annotated[int, typer.Option(min=1, help="Texts each variant encodes.")] = 64,
    retime: Annotated[bool, typer.Option(
        "--retime", help="Time again even when a choice is recorded for this machine.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export the model's ONNX variants (once), time every CPU variant on a sample of your texts
    and record the fastest whose vectors agree with float32 (mean cosine >= 0.99).

    Searching and ingesting on this kind of CPU then use it; `kinsight ingest` runs this on its
    file's first texts when nothing is recorded yet. The choice sits beside the export under
    $KINSIGHT_CACHE_DIR (default ~/.cache/kinsight); KINSIGHT_TEXT_VARIANT pins a variant instead.
    """
    from kinsight.indexers import model_cache
    from kinsight.indexers.ingest import text_of
    from kinsight.indexers.model_prepare import PrepareOptions, prepare_text_encoder
    from kinsight.indexers.readers import read_records
    from kinsight.indexers.records import Record

    from ..demo import demo_data

    if path is None:
        path = demo_data() / "debian_sample.parquet"
        if not as_json:
            err.print(f"timing on the bundled Debian sample ({path.name}); pass a file of your "
                      "own texts for a choice made on them")
    elif not path.exists():
        fail(f"{path}: no such file or folder; check the path")
    fields = tuple(text_field or ["text"])
    texts = (text_of(r, fields) for r in read_records(path, id_field=id_field, text_fields=fields)
             if isinstance(r, Record))
    choice = prepare_text_encoder(encoder, texts, PrepareOptions(sample_size=sample, retime=retime),
                                  progress=not as_json)
    where = model_cache.choice_path(choice.fingerprint)
    if as_json:
        console.print_json(data={**asdict(choice), "recorded_in": str(where)})
        return
    reference = choice.result("torch-fp32")
    base = reference.docs_per_second if reference and reference.docs_per_second else None
    table = Table("variant", "docs/s", "x torch fp32", "mean cosine", "min cosine", "gate",
                  title=f"{choice.spec} on this CPU ({choice.sample_texts} texts, "
                        f"gate: mean cosine >= {choice.min_mean_cosine})")
    for r in choice.results:
        speed = r.docs_per_second
        table.add_row(
            r.variant + (" (chosen)" if r.variant == choice.variant else ""),
            f"{speed:.1f}" if speed is not None else "-",
            f"{speed / base:.2f}" if speed is not None and base else "-",
            f"{r.mean_cosine:.4f}" if r.mean_cosine is not None else "-",
            f"{r.min_cosine:.4f}" if r.min_cosine is not None else "-",
            "pass" if r.passed else (r.note or "fail"))
    console.print(table)
    console.print(f"chose {choice.variant} on {choice.created}; recorded in {where}",
                  highlight=False)
