"""Train the shipped default adapter: bundled EfficientNet-Lite0 ↔ bundled all-MiniLM-L6-v2.

Trained by InfoNCE on the train split of ../shared/data/images (Tux Paint stamps + emoji), its
early stopping on the validation split; the test split is never read. Writes
benchmarks/results/adapters/default/ (adapter.json + weights.npz); only ``--ship`` replaces the
tracked indexers/shipped_adapters/default/, which makes ``adapter:default:image`` and
``adapter:default:text`` work offline. Shipping a new one changes its fingerprint, so every space
built on the old one must be ingested again: do it only on purpose. The split is fixed, the
features are cached (image_features.py) and the seed is fixed.

    .venv/bin/python benchmarks/train_default_adapter.py          # train, compare, keep it aside
    .venv/bin/python benchmarks/train_default_adapter.py --ship   # replace the shipped adapter
"""

from __future__ import annotations

import argparse

from _common import RESULTS, ROOT, print_table
from image_features import DEFAULT_IMAGE_ENCODER, split_features

from kinsight.engine import DEFAULT_TEXT_ENCODER, load_encoder
from kinsight.indexers.adapters import AdapterSide, save_adapter
from kinsight.indexers.align import AlignOptions, train_adapter

SHIPPED = ROOT / "indexers" / "shipped_adapters"
# Settings chosen before looking at any figure of the test split; only validation recall steered.
OPTIONS = AlignOptions(method="infonce", dim=256, max_epochs=400, batch_size=256,
                       learning_rate=1e-3, weight_decay=0.1, patience=25, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ship", action="store_true",
                        help="replace the shipped default adapter (changes its fingerprint)")
    into = SHIPPED if parser.parse_args().ship else RESULTS / "adapters"
    _, image_train, text_train = split_features(DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, "train")
    _, image_val, text_val = split_features(DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER,
                                            "validation")
    sides = (AdapterSide.of(load_encoder(DEFAULT_IMAGE_ENCODER).info),
             AdapterSide.of(load_encoder(DEFAULT_TEXT_ENCODER).info))
    report = train_adapter(
        "default", sides, (image_train, text_train), (image_val, text_val), OPTIONS,
        trained_on=f"../shared/data/images train split (Tux Paint stamps + Noto emoji), "
                   f"{len(image_train)} pictures with their captions; early stopping on the "
                   f"validation split ({len(image_val)})",
        on_epoch=lambda e: print(f"epoch {e.epoch:3d}  loss {e.loss:.4f}  temperature "
                                 f"{e.temperature:.4f}  validation recall {e.validation_recall:.3f}")
        if e.epoch % 10 == 0 else None)
    print_table(f"validation recall ({len(image_val)} pairs): random projection vs the adapter",
                ["direction", "R@1", "R@5", "R@10"],
                [[f"{label} {when}", *getattr(recall, attr).values()]
                 for when, recall in (("before", report.before), ("after", report.after))
                 for label, attr in (("text→image", "text_to_image"),
                                     ("image→text", "image_to_text"))])
    print(f"kept epoch {report.best_epoch}, stopped at {report.stopped_epoch}; temperature "
          f"{report.adapter.config.temperature:.4f}")
    print(f"wrote {save_adapter(report.adapter, into, replace=True)} (fingerprint "
          f"{report.adapter.config.fingerprint})")


if __name__ == "__main__":
    main()
