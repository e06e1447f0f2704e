"""Zero-shot labels vs linear probes on the pictures' categories (test split).

Zero-shot: kinsight's ``zero_shot`` on a collection of the test pictures in the shipped default
adapter's space (``adapter:default:image``), the category names as labels, the default template
ensemble, the adapter's learned temperature. Linear probes (scikit-learn logistic regression, as
``classify --train`` uses) are trained on 1, 5 and all train-split pictures per category, on the
same adapter vectors and on the richer base EfficientNet-Lite0 features; 1 and 5 shots are
averaged over 10 seeded draws. Each dataset (tuxpaint: 16 categories, emoji: 9) is scored on its
own, as a user would label one collection with its own categories.

    .venv/bin/python benchmarks/zero_shot.py
"""

from __future__ import annotations

import numpy as np
from _common import print_table, save
from image_data import DATASETS, image_items
from image_features import DEFAULT_IMAGE_ENCODER, features
from sklearn.linear_model import LogisticRegression

from kinsight.engine import Item, Store, load_encoder
from kinsight.engine.zero_shot import ZeroShotOptions, zero_shot
from kinsight.indexers.adapters import load_adapter

ADAPTER = "adapter:default:image"
SHOTS = (1, 5)
DRAWS = 10


def probe_accuracy(train_x, train_y, test_x, test_y, shots: int | None, seed: int) -> float:
    rng = np.random.default_rng(seed)
    if shots is not None:
        rows = np.concatenate([rng.choice(np.flatnonzero(train_y == c), size=min(
            shots, int((train_y == c).sum())), replace=False) for c in np.unique(train_y)])
        train_x, train_y = train_x[rows], train_y[rows]
    model = LogisticRegression(max_iter=2000).fit(train_x, train_y)
    return float(np.mean(model.predict(test_x) == test_y))


def main() -> None:
    adapter = load_adapter("default")
    info = load_encoder(ADAPTER).info
    rows, payload = [], {}
    for dataset in DATASETS:
        train = [i for i in image_items("train") if i.id.startswith(dataset + "/")]
        test = [i for i in image_items("test") if i.id.startswith(dataset + "/")]
        base_train, base_test = features(DEFAULT_IMAGE_ENCODER, train), features(
            DEFAULT_IMAGE_ENCODER, test)
        mapped_train = adapter.project("image", base_train)
        mapped_test = adapter.project("image", base_test)
        labels = sorted({i.category.split("/", 1)[1] for i in train + test})
        test_y = np.array([i.category.split("/", 1)[1] for i in test])
        train_y = np.array([i.category.split("/", 1)[1] for i in train])

        with Store(":memory:") as store:
            coll = store.create_collection("pictures")
            coll.ensure_space("image", info)
            coll.upsert(Item(i.id, {"category": y}, {"image": v}) for i, y, v in
                        zip(test, test_y, mapped_test, strict=True))
            result = zero_shot(coll, labels, ZeroShotOptions(space="image", label_field="category"))
        results = {"zero-shot (adapter space, template ensemble)": result.accuracy}
        for name, (tx, vx) in {"adapter space": (mapped_train, mapped_test),
                               "EfficientNet features": (base_train, base_test)}.items():
            for shots in SHOTS:
                results[f"probe, {shots} per class, {name}"] = float(np.mean([
                    probe_accuracy(tx, train_y, vx, test_y, shots, seed) for seed in range(DRAWS)]))
            results[f"probe, all ({len(train)}), {name}"] = probe_accuracy(
                tx, train_y, vx, test_y, None, 0)
        majority = max(np.mean(test_y == c) for c in labels)
        results["majority class"] = float(majority)
        for method, accuracy in results.items():
            rows.append((dataset, len(labels), len(test), method, accuracy))
        payload[dataset] = {"categories": labels, "test_items": len(test), "accuracy": results,
                            "temperature": result.temperature, "templates": result.templates}
        print(f"{dataset}: zero-shot {result.accuracy:.3f}")
    print_table("Category accuracy on the test split", ["dataset", "classes", "test", "method",
                                                         "accuracy"], rows)
    save("zero_shot", {"results": payload, "command": "benchmarks/zero_shot.py"})


if __name__ == "__main__":
    main()
