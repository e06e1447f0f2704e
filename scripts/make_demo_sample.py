"""Build the sample that ``kinsight demo`` indexes, from the Debian evaluation data.

    .venv/bin/python scripts/make_demo_sample.py [--data-dir ../shared/data/debian]

Writes ``api/demo_data/``: ``debian_sample.parquet`` (id, title, text, section, tags),
``queries.jsonl`` (qid, text) and ``qrels.tsv`` (qid, doc_id, rel) restricted to the sample.
The demo encodes every document with the real model on a laptop-class CPU (~40 docs/s on two
cores), so 2,000 documents keep the first command under a minute; the seed makes the sample the
same on every run, so demo results quoted in the README stay true.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kinsight.engine.evaluation import QRELS_HEADER, load_qrels, load_queries

log = logging.getLogger("make_demo_sample")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "debian"
DEFAULT_OUT_DIR = REPO_ROOT / "api" / "demo_data"
COLUMNS = ["id", "title", "text", "section", "tags"]


def sample_corpus(corpus: pa.Table, size: int, seed: int) -> pa.Table:
    """``size`` rows drawn without replacement, kept in corpus order so diffs stay readable."""
    if size > corpus.num_rows:
        raise ValueError(f"cannot sample {size} rows from a corpus of {corpus.num_rows}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(corpus.num_rows, size=size, replace=False))
    return corpus.select(COLUMNS).take(pa.array(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder with corpus.parquet, queries.jsonl and qrels.tsv")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    corpus = pq.read_table(args.data_dir / "corpus.parquet")
    sample = sample_corpus(corpus, args.size, args.seed)
    in_sample = set(sample.column("id").to_pylist())

    # A query whose relevant packages are partly outside the sample keeps only the rows for
    # packages inside it: the others cannot be retrieved from the demo index.
    qrels = {
        qid: {doc: rel for doc, rel in rels.items() if doc in in_sample}
        for qid, rels in load_qrels(args.data_dir / "qrels.tsv").items()
    }
    qrels = {qid: rels for qid, rels in qrels.items() if any(r > 0 for r in rels.values())}
    queries = [q for q in load_queries(args.data_dir / "queries.jsonl") if q.qid in qrels]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(sample, args.out_dir / "debian_sample.parquet",
                   compression="zstd", compression_level=19)
    with (args.out_dir / "queries.jsonl").open("w", encoding="utf-8", newline="\n") as f:
        for q in queries:
            f.write(json.dumps({"qid": q.qid, "text": q.text}, ensure_ascii=False) + "\n")
    with (args.out_dir / "qrels.tsv").open("w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(QRELS_HEADER) + "\n")
        for q in queries:
            for doc, rel in sorted(qrels[q.qid].items()):
                f.write(f"{q.qid}\t{doc}\t{rel}\n")

    log.info("%d documents, %d queries written to %s", sample.num_rows, len(queries),
             args.out_dir)
    for path in sorted(args.out_dir.iterdir()):
        log.info("  %-24s %8d bytes", path.name, path.stat().st_size)


if __name__ == "__main__":
    main()
