"""Fingerprints of model weights: what a vector space records so that a query from another model
is refused. Every encoder takes them from here so that equal weights always give equal prints."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only to hash weights in memory: file hashes need none
    import torch

__all__ = ["FINGERPRINT_CHARS", "hash_files", "hash_parameters", "hash_text"]

FINGERPRINT_CHARS = 16
_HASH_BLOCK = 1 << 20


def hash_files(paths: Iterable[Path]) -> str:
    """First 16 hex digits of the SHA-256 of the files' contents, read in the order given.

    Only contents are hashed, so copying or renaming a checkpoint keeps its fingerprint.
    """
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as stream:
            while block := stream.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def hash_text(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text``: a fingerprint made of others (weights
    and the preprocessing that feeds them)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


def hash_parameters(model: torch.nn.Module) -> str:
    """Fingerprint of the weights in memory (names and float32 values), for models whose files
    are not at hand: Hub models loaded by name, randomly initialised ones."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_CHARS]
