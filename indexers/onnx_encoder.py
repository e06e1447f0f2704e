"""A sentence-transformers model run by ONNX Runtime: the fast CPU variants, without torch.

``onnx_export`` writes a model's graphs once (``fp32.onnx``, graph-optimised; ``int8.onnx``,
dynamically quantised), with its tokenizer and an ``export.json`` describing them; this module
loads them with onnxruntime and the ``tokenizers`` library only, so a query encoded by an ONNX
variant never imports torch. The exported graph includes the model's pooling and normalisation:
its output is the sentence embedding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from kinsight.engine.encoders import EncoderInfo, Role
from kinsight.engine.errors import EncoderError, InvalidInputError

from .devices import cpu_threads
from .sentence_encoder import check_texts

__all__ = ["EXPORT_FILE", "GRAPH_FILES", "TOKENIZER_FILE", "OnnxExport", "OnnxSentenceEncoder",
           "load_onnx_encoder", "read_export"]

EXPORT_FILE = "export.json"
TOKENIZER_FILE = "tokenizer.json"
GRAPH_FILES = {"onnx-fp32": "fp32.onnx", "onnx-int8": "int8.onnx"}
# The same batch as the torch encoder on the CPU: texts sorted by length, so padding stays small.
BATCH_SIZE = 32
_ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True)
class OnnxExport:
    """What ``export.json`` says about an exported model: the graphs' inputs (``input_ids``,
    ``attention_mask`` and, for BERT-like models, ``token_type_ids``), the longest input in
    tokens, the embedding dimension, the text each role's prompt puts before an input, and the
    fingerprint of the weights it was exported from."""

    folder: Path
    fingerprint: str
    inputs: tuple[str, ...]
    max_tokens: int
    dim: int
    prompts: dict[str, str]
    pad_id: int

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "inputs": list(self.inputs),
                "max_tokens": self.max_tokens, "dim": self.dim, "prompts": self.prompts,
                "pad_id": self.pad_id}


def read_export(folder: Path) -> OnnxExport | None:
    """The export in ``folder``; None when there is none or it is incomplete (``export.json`` is
    written last, so its presence means every file beside it is whole)."""
    path = folder / EXPORT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        export = OnnxExport(folder=folder, fingerprint=str(data["fingerprint"]),
                            inputs=tuple(data["inputs"]), max_tokens=int(data["max_tokens"]),
                            dim=int(data["dim"]), prompts=dict(data["prompts"]),
                            pad_id=int(data["pad_id"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EncoderError(f"cannot read the ONNX export {path}: {e}; delete {folder} and run "
                           "kinsight model prepare to export it again") from e
    missing = [f for f in (TOKENIZER_FILE, *GRAPH_FILES.values()) if not (folder / f).is_file()]
    return None if missing else export


class OnnxSentenceEncoder:
    """One ONNX variant of a sentence-transformers model behind the ``Encoder`` protocol.

    ``encode`` returns unit-length float32 vectors of shape ``(n, info.dim)``; ``info`` is the
    torch model's (same spec and fingerprint), since the quality gate of ``model prepare``
    guarantees the vectors agree with it. Build one with ``load_onnx_encoder``.
    """

    def __init__(self, info: EncoderInfo, export: OnnxExport, variant: str, session: Any,
                 tokenizer: Any) -> None:
        self._info = info
        self._export = export
        self._variant = variant
        self._session = session
        self._tokenizer = tokenizer

    @property
    def info(self) -> EncoderInfo:
        return self._info

    @property
    def variant(self) -> str:
        """Which graph runs: ``onnx-fp32`` or ``onnx-int8``."""
        return self._variant

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        """Embed texts: float32 of shape ``(len(inputs), info.dim)``, each row of unit length."""
        if role not in _ROLES:
            raise InvalidInputError(f"role {role!r} is not one of {', '.join(_ROLES)}")
        texts = check_texts(inputs)
        out = np.zeros((len(texts), self._export.dim), dtype=np.float32)
        if not texts:
            return out
        prompt = self._export.prompts.get(role, "")
        encodings = self._tokenizer.encode_batch([prompt + t for t in texts])
        # Longest first, as sentence-transformers does: each batch pads to nearly its own length.
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(texts), BATCH_SIZE):
            rows = order[start:start + BATCH_SIZE]
            feeds = self._feeds([encodings[i] for i in rows])
            out[rows] = self._session.run(None, feeds)[0]
        # The graph normalises already; again in float64 so int8 rows are unit length to 1e-6.
        norms = np.linalg.norm(out.astype(np.float64), axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)

    def _feeds(self, batch: list[Any]) -> dict[str, np.ndarray]:
        length = max(len(e.ids) for e in batch)
        ids = np.full((len(batch), length), self._export.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.int64)
        types = np.zeros((len(batch), length), dtype=np.int64)
        for row, encoding in enumerate(batch):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        named = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: named[name] for name in self._export.inputs}

    def __repr__(self) -> str:
        return f"OnnxSentenceEncoder({self._info.spec!r}, variant={self._variant!r})"


def load_onnx_encoder(info: EncoderInfo, export: OnnxExport, variant: str) -> OnnxSentenceEncoder:
    """Open ``variant``'s graph of ``export`` with onnxruntime on the CPU, using the threads
    ``devices.cpu_threads`` allows. Raises ``EncoderError`` when onnxruntime is missing (naming
    the extra) or the graph cannot be loaded."""
    if variant not in GRAPH_FILES:
        raise InvalidInputError(f"{variant!r} is not an ONNX variant; use one of "
                                f"{', '.join(GRAPH_FILES)}")
    try:
        import onnxruntime
        from tokenizers import Tokenizer
    except ImportError as e:
        raise EncoderError(f"the {variant} variant needs onnxruntime and tokenizers ({e}); "
                           "pip install 'kinsight[onnx]', or set KINSIGHT_TEXT_VARIANT=torch-fp32"
                           ) from e
    graph = export.folder / GRAPH_FILES[variant]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings are about kernels it picked
    try:
        session = onnxruntime.InferenceSession(str(graph), options,
                                               providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(export.folder / TOKENIZER_FILE))
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise EncoderError(f"cannot load {graph}: {e}; delete {export.folder} and run "
                           "kinsight model prepare to export it again") from e
    tokenizer.enable_truncation(max_length=export.max_tokens)
    tokenizer.no_padding()
    return OnnxSentenceEncoder(info, export, variant, session, tokenizer)
