"""``align``: the CLIP recipe on two frozen encoders — train an adapter from paired vectors.

Given pairs (a picture's vector by an image encoder, its caption's vector by a text encoder),
learn one affine map per side into a shared space where partners are close:

* ``infonce``: CLIP's symmetric contrastive loss with a learned temperature, on batches of pairs
  (AdamW with weight decay, early stopping on validation recall, the best epoch kept). Pairs
  with identical captions are both counted as positives, so duplicates are not pushed apart;
* ``ridge``: the closed-form baseline, ridge regression from the image space onto the (centred)
  text space, its strength picked on validation recall; the shared space is the text space;
* ``random``: a random projection of both sides, the floor any training must beat.

Features are precomputed, so training runs in seconds to minutes on a CPU. Recall is measured in
both directions with identical captions grouped: text → image asks, for each distinct caption,
whether one of its pictures is among the k nearest; image → text, whether a picture's caption is
among the k nearest distinct captions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from kinsight.engine.errors import InvalidInputError
from kinsight.engine.filters import FilterInput
from kinsight.engine.vectors import mean_item_vectors

from .adapters import Adapter, AdapterSide

if TYPE_CHECKING:
    from kinsight.engine import Collection

__all__ = [
    "RECALL_KS",
    "AlignOptions",
    "AlignReport",
    "CrossModalRecall",
    "EpochStats",
    "Method",
    "align_collection",
    "cross_modal_recall",
    "group_ids",
    "train_adapter",
]

log = logging.getLogger(__name__)

Method = Literal["infonce", "ridge", "random"]
RECALL_KS = (1, 5, 10)
_RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)
_MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: a temperature no lower than 0.01
_Make = Callable[..., Adapter]  # (means, matrices, method, temperature) -> Adapter
_Recall = Callable[[Adapter], "CrossModalRecall"]
OnEpoch = Callable[["EpochStats"], None]


@dataclass(frozen=True)
class AlignOptions:
    """How to train. ``validation``: the share of caption groups held out (by ``seed``) to stop
    training and pick the ridge strength, unless ``validation_where`` names them by a filter;
    ``where`` restricts the items used at all (e.g. a train split). ``patience``: epochs without
    a better validation recall before training stops."""

    method: Method = "infonce"
    dim: int = 256
    validation: float = 0.15
    validation_where: FilterInput = None
    where: FilterInput = None
    seed: int = 0
    max_epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    patience: int = 15


@dataclass(frozen=True)
class CrossModalRecall:
    """Recall@k in both directions, keyed by k."""

    text_to_image: dict[int, float]
    image_to_text: dict[int, float]

    @property
    def mean(self) -> float:
        """Mean over both directions and every k: what early stopping and the ridge strength
        follow (recall@10 alone saturates long before recall@1 stops improving)."""
        values = [*self.text_to_image.values(), *self.image_to_text.values()]
        return float(np.mean(values))

    def as_dict(self) -> dict[str, float]:
        return {f"{name}@{k}": value for name, by_k in (("text_to_image", self.text_to_image),
                                                         ("image_to_text", self.image_to_text))
                for k, value in by_k.items()}


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    loss: float
    temperature: float
    validation_recall: float  # CrossModalRecall.mean on the validation pairs


@dataclass(frozen=True)
class AlignReport:
    """What training did: sizes, validation recall before (a random projection of both sides)
    and after, the curve per epoch (InfoNCE), the epoch kept and where training stopped."""

    adapter: Adapter
    train_items: int
    validation_items: int
    before: CrossModalRecall
    after: CrossModalRecall
    curve: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_epoch: int = 0


def group_ids(text_vectors: np.ndarray) -> np.ndarray:
    """One group id per row ``(n,)`` int: rows with identical text vectors (the same caption)
    share one."""
    _, inverse = np.unique(np.asarray(text_vectors, np.float32), axis=0, return_inverse=True)
    return np.asarray(inverse).reshape(-1)


def cross_modal_recall(image: np.ndarray, text: np.ndarray, groups: np.ndarray,
                       ks: Sequence[int] = RECALL_KS) -> CrossModalRecall:
    """Recall@k of partners ``image[i]`` ↔ ``text[i]`` (unit rows in one space); ``groups``
    from ``group_ids``. See the module docstring for how repeated captions count."""
    _, first = np.unique(groups, return_index=True)
    captions, caption_groups = text[first], groups[first]
    scores = captions @ image.T  # (distinct captions, pictures)
    ranked = np.argsort(-scores, axis=1, kind="stable")
    t2i = {k: float(np.mean((groups[ranked[:, :k]] == caption_groups[:, None]).any(axis=1)))
           for k in ks}
    ranked = np.argsort(-(image @ captions.T), axis=1, kind="stable")
    i2t = {k: float(np.mean((caption_groups[ranked[:, :k]] == groups[:, None]).any(axis=1)))
           for k in ks}
    return CrossModalRecall(t2i, i2t)


def train_adapter(name: str, sides: tuple[AdapterSide, AdapterSide],
                  train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
                  options: AlignOptions, *, trained_on: str = "",
                  on_epoch: OnEpoch | None = None) -> AlignReport:
    """Fit an adapter on paired base vectors: ``train`` and ``validation`` are ``(image (n,
    image_dim), text (n, text_dim))`` float32, row i of one the partner of row i of the other;
    ``sides`` are the image and the text ``AdapterSide``; ``on_epoch`` hears of each epoch."""
    image_side, text_side = sides
    if image_side.modality != "image" or text_side.modality != "text":
        raise InvalidInputError("align pairs an image space with a text space; got "
                                f"{image_side.modality} and {text_side.modality}")
    for part, (x, y) in (("train", train), ("validation", validation)):
        if len(x) != len(y) or len(x) < 2:
            raise InvalidInputError(f"{part} needs at least 2 pairs with one picture per caption; "
                                    f"got {len(x)} pictures and {len(y)} captions")
    x_val, y_val = validation
    val_groups = group_ids(y_val)

    def make(means: dict[str, np.ndarray], matrices: dict[str, np.ndarray], method: str,
             temperature: float, metrics: dict[str, float] | None = None) -> Adapter:
        return Adapter.create(name, image_side, text_side, means, matrices, method=method,
                              temperature=temperature, trained_on=trained_on, metrics=metrics)

    def recall(adapter: Adapter) -> CrossModalRecall:
        return cross_modal_recall(adapter.project("image", x_val), adapter.project("text", y_val),
                                  val_groups)

    random = make(*_random_projection(train, options), "random", 1.0)
    before = recall(random)
    curve: list[EpochStats] = []
    best_epoch = stopped = 0
    if options.method == "random":
        adapter = random
    elif options.method == "ridge":
        adapter = _fit_ridge(train, make, recall)
    elif options.method == "infonce":
        adapter, curve, best_epoch, stopped = _fit_infonce(train, options, make, recall, on_epoch)
    else:
        raise InvalidInputError(f"unknown align method {options.method!r}; use infonce, ridge "
                                "or random")
    after = recall(adapter)
    adapter = make(adapter.means, adapter.matrices, adapter.config.method,
                   adapter.config.temperature, {f"validation_{k}": v for k, v in after.as_dict().items()})
    return AlignReport(adapter, len(train[0]), len(x_val), before, after, curve, best_epoch, stopped)


def _random_projection(train: tuple[np.ndarray, np.ndarray], options: AlignOptions
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(options.seed)
    x, y = train
    matrices = {m: np.linalg.qr(rng.normal(size=(v.shape[1], options.dim)))[0]
                if v.shape[1] >= options.dim else rng.normal(size=(v.shape[1], options.dim))
                for m, v in (("image", x), ("text", y))}
    return {"image": x.mean(axis=0), "text": y.mean(axis=0)}, matrices


def _fit_ridge(train: tuple[np.ndarray, np.ndarray], make: _Make, recall: _Recall) -> Adapter:
    """Ridge from the image space onto the centred text space (scikit-learn's closed form); the
    text side is the identity, so the shared space is the text space and ``dim`` is unused."""
    from sklearn.linear_model import Ridge

    x, y = train
    means = {"image": x.mean(axis=0), "text": y.mean(axis=0)}
    candidates = []
    for alpha in _RIDGE_ALPHAS:
        model = Ridge(alpha=alpha, fit_intercept=False).fit(x - means["image"], y - means["text"])
        candidate = make(means, {"image": model.coef_.T, "text": np.eye(y.shape[1])}, "ridge", 1.0)
        candidates.append((recall(candidate).mean, -alpha, candidate))
        log.info("ridge alpha %g: mean validation recall %.3f", alpha, candidates[-1][0])
    return max(candidates, key=lambda c: c[:2])[2]  # ties: the stronger regularisation


def _fit_infonce(train: tuple[np.ndarray, np.ndarray], options: AlignOptions, make: _Make,
                 recall: _Recall, on_epoch: OnEpoch | None
                 ) -> tuple[Adapter, list[EpochStats], int, int]:
    x, y = (torch.from_numpy(np.ascontiguousarray(v, np.float32)) for v in train)
    groups = torch.from_numpy(group_ids(train[1]))
    means = {"image": x.mean(0), "text": y.mean(0)}
    generator = torch.Generator().manual_seed(options.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        image_map = torch.nn.Linear(x.shape[1], options.dim, bias=False)
        text_map = torch.nn.Linear(y.shape[1], options.dim, bias=False)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's starting point
    optimiser = torch.optim.AdamW([
        {"params": [image_map.weight, text_map.weight], "weight_decay": options.weight_decay},
        {"params": [logit_scale], "weight_decay": 0.0}], lr=options.learning_rate)

    def snapshot() -> Adapter:
        return make({m: v.numpy() for m, v in means.items()},
                    {"image": image_map.weight.detach().T.numpy().copy(),
                     "text": text_map.weight.detach().T.numpy().copy()},
                    "infonce", float(1 / logit_scale.detach().exp()))

    curve: list[EpochStats] = []
    best: tuple[float, int, Adapter] = (-1.0, 0, snapshot())
    epoch = 0
    for epoch in range(1, options.max_epochs + 1):
        order = torch.randperm(len(x), generator=generator)
        losses = []
        for start in range(0, len(x), options.batch_size):
            batch = order[start:start + options.batch_size]
            if len(batch) < 2:
                continue
            image = torch.nn.functional.normalize(image_map(x[batch] - means["image"]), dim=-1)
            text = torch.nn.functional.normalize(text_map(y[batch] - means["text"]), dim=-1)
            logits = logit_scale.exp() * image @ text.T
            same = (groups[batch][:, None] == groups[batch][None, :]).float()
            targets = same / same.sum(dim=1, keepdim=True)  # duplicate captions: all positives
            loss = (_soft_cross_entropy(logits, targets) + _soft_cross_entropy(logits.T, targets)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                logit_scale.clamp_(0, _MAX_LOGIT_SCALE)
            losses.append(loss.item())
        with torch.no_grad():
            current = snapshot()
        score = recall(current).mean
        curve.append(EpochStats(epoch, float(np.mean(losses)), current.config.temperature, score))
        if on_epoch is not None:
            on_epoch(curve[-1])
        if score > best[0]:
            best = (score, epoch, current)
        elif epoch - best[1] >= options.patience:
            log.info("early stop at epoch %d: no better validation recall since epoch %d",
                     epoch, best[1])
            break
    return best[2], curve, best[1], epoch


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution per row (rows of ``targets`` sum to 1)."""
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


# -- from a collection ------------------------------------------------------------------------------
def align_collection(collection: Collection, image_space: str, text_space: str, name: str,
                     options: AlignOptions, *, on_epoch: OnEpoch | None = None) -> AlignReport:
    """Train adapter ``name`` on the items that have vectors in both spaces (one mean vector per
    item and space), holding out a validation set (see ``AlignOptions``)."""
    spaces = {s: collection.space(s) for s in (image_space, text_space)}
    by_modality = {vs.encoder.modality: vs for vs in spaces.values()}
    if set(by_modality) != {"image", "text"}:
        raise InvalidInputError(
            f"align needs an image space and a text space; {image_space!r} holds "
            f"{spaces[image_space].encoder.modality} and {text_space!r} "
            f"{spaces[text_space].encoder.modality} vectors")
    allowed = None if options.where is None else collection.ids_matching(options.where)
    ids_i, image = mean_item_vectors(collection, by_modality["image"].name, allowed)
    ids_t, text = mean_item_vectors(collection, by_modality["text"].name, allowed)
    common = sorted(set(ids_i) & set(ids_t))
    if len(common) < 4:
        raise InvalidInputError(f"collection {collection.name!r} has {len(common)} items with "
                                f"vectors in both {image_space!r} and {text_space!r}; align needs "
                                "pairs (ingest pictures with --caption-field)")
    pos_i, pos_t = ({i: n for n, i in enumerate(ids)} for ids in (ids_i, ids_t))
    image = image[[pos_i[i] for i in common]]
    text = text[[pos_t[i] for i in common]]
    held_out = _validation_mask(collection, common, text, options)
    sides = (AdapterSide.of(by_modality["image"].encoder), AdapterSide.of(by_modality["text"].encoder))
    return train_adapter(name, sides, (image[~held_out], text[~held_out]),
                         (image[held_out], text[held_out]), options,
                         trained_on=f"collection {collection.name!r}: {image_space} ↔ {text_space}, "
                                    f"{int((~held_out).sum())} pairs", on_epoch=on_epoch)


def _validation_mask(collection: Collection, ids: list[str], text: np.ndarray,
                     options: AlignOptions) -> np.ndarray:
    """Held-out rows: by filter, or a seeded share of caption groups (identical captions stay on
    one side, so validation captions were never trained on)."""
    if options.validation_where is not None:
        chosen = set(collection.ids_matching(options.validation_where))
        mask = np.array([i in chosen for i in ids])
    else:
        if not 0 < options.validation < 1:
            raise InvalidInputError(f"validation must be a share between 0 and 1, got "
                                    f"{options.validation}")
        groups = group_ids(text)
        shuffled = np.random.default_rng(options.seed).permutation(groups.max() + 1)
        held = shuffled[:max(1, round(options.validation * len(shuffled)))]
        mask = np.isin(groups, held)
    if mask.sum() < 2 or (~mask).sum() < 2:
        raise InvalidInputError(f"the validation set has {int(mask.sum())} of {len(ids)} pairs; "
                                "both it and the training set need at least 2")
    return mask
