"""Export a sentence-transformers model to the ONNX graphs ``onnx_encoder`` runs, from its folder.

Done once per model (``kinsight model prepare`` calls it) into ``model_cache.onnx_dir``, never into
the package or the model's folder. The whole model is one graph: transformer, pooling, optional
dense layers and normalisation, so its output is the sentence embedding. Two graphs come out:

* ``fp32.onnx``: the graph with onnxruntime's transformer fusions (attention, GELU, skip
  layer-norm fused into single kernels);
* ``int8.onnx``: the same with its matrix weights quantised to int8 per output channel and the
  activations quantised on the fly (dynamic quantisation: no calibration data needed).

Tracing uses torch's TorchScript-based exporter with eager attention: its graph is the one
onnxruntime's fusions recognise (the SDPA path exports to a graph they do not fuse).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinsight.engine.errors import EncoderError

from .onnx_encoder import EXPORT_FILE, GRAPH_FILES, TOKENIZER_FILE, OnnxExport, read_export
from .sentence_encoder import embedding_dimension, prompt_names

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["ensure_onnx_export"]

log = logging.getLogger(__name__)

OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def ensure_onnx_export(model_folder: Path, fingerprint: str, dest: Path) -> OnnxExport:
    """The ONNX export of the model in ``model_folder`` at ``dest``: read when it is there,
    made (~10 s for MiniLM) when not. Raises ``EncoderError`` (naming the extra to install
    when onnx or onnxruntime is missing) when the model cannot be exported."""
    existing = read_export(dest)
    if existing is not None:
        return existing
    try:
        import onnx  # noqa: F401  (the quantiser needs it; fail here, before tracing)
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise EncoderError(f"exporting ONNX variants needs onnx and onnxruntime ({e}); "
                           "pip install 'kinsight[onnx]'") from e
    started = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f"{dest.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        _export(model_folder, fingerprint, partial)
        if dest.exists():  # another process finished first: keep its copy
            shutil.rmtree(partial, ignore_errors=True)
        else:
            os.replace(partial, dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    export = read_export(dest)
    if export is None:
        raise EncoderError(f"the ONNX export in {dest} is incomplete; delete it and run "
                           "kinsight model prepare again")
    log.info("exported %s to ONNX (fp32, int8) in %s in %.1fs", model_folder, dest,
             time.perf_counter() - started)
    return export


def _load_eager(model_folder: Path) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(model_folder), device="cpu", local_files_only=True,
                                   model_kwargs={"attn_implementation": "eager"})
    except Exception as e:  # transformers raises OSError, ValueError, ...
        raise EncoderError(f"cannot load {model_folder} to export it to ONNX: {e}") from e


def _export(model_folder: Path, fingerprint: str, out: Path) -> None:
    import json

    import torch

    model = _load_eager(model_folder).eval()
    tokenizer: Any = getattr(model, "tokenizer", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise EncoderError(f"{model_folder} has no fast (Rust) tokenizer, which the ONNX "
                           "variants tokenize with; keep the torch variant for this model")
    prompts = {role: str(model.prompts[name]) for role, name in prompt_names(model).items() if name}
    if prompts and any(getattr(m, "include_prompt", True) is False for m in model):
        raise EncoderError(f"{model_folder} pools without its prompt tokens, which the ONNX "
                           "export cannot reproduce; keep the torch variant for this model")
    example = tokenizer(["an example sentence", "another, somewhat longer example sentence"],
                        padding=True, return_tensors="pt")
    inputs = tuple(name for name in _INPUTS if name in example)
    graph = _sentence_graph(model, inputs)
    raw = out / "raw.onnx"
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript exporter warns that it is deprecated and about traced shape checks
        # that are constant for an encoder without a KV cache; neither is the user's concern.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, tuple(example[n] for n in inputs), str(raw),
                          input_names=list(inputs), output_names=["sentence_embedding"],
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in inputs},
                                        "sentence_embedding": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    fp32 = out / GRAPH_FILES["onnx-fp32"]
    _optimise(raw, fp32, model)
    raw.unlink()
    _quantise(fp32, out / GRAPH_FILES["onnx-int8"])
    backend.save(str(out / TOKENIZER_FILE))
    if not model.max_seq_length:
        raise EncoderError(f"{model_folder} does not say how many tokens it reads "
                           "(max_seq_length); keep the torch variant for this model")
    export = OnnxExport(out, fingerprint, inputs, int(model.max_seq_length),
                        embedding_dimension(model), prompts, int(tokenizer.pad_token_id or 0))
    (out / EXPORT_FILE).write_text(json.dumps(export.to_json(), indent=2) + "\n", encoding="utf-8")


def _sentence_graph(model: SentenceTransformer, inputs: tuple[str, ...]) -> Any:
    """What is traced: token tensors in, sentence embeddings out (all of the model's modules)."""
    import torch

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    return SentenceGraph().eval()


def _optimise(raw: Path, fp32: Path, model: SentenceTransformer) -> None:
    """onnxruntime's transformer fusions, saved so they are not redone at every load. A model
    whose graph they do not recognise keeps its plain graph (onnxruntime still optimises it)."""
    from onnxruntime.transformers import optimizer

    config = getattr(model[0], "auto_model", None)
    config = getattr(config, "config", None)
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    try:
        optimised = optimizer.optimize_model(str(raw), model_type="bert", num_heads=heads,
                                             hidden_size=hidden, opt_level=0)
        optimised.save_model_to_file(str(fp32))
    except Exception as e:  # the fusion scripts raise anything on graphs they do not expect
        log.warning("onnxruntime's transformer fusions failed (%s); keeping the plain graph", e)
        shutil.copyfile(raw, fp32)


def _quantise(fp32: Path, int8: Path) -> None:
    """Dynamic int8: weights per output channel (per-tensor scales cost MiniLM ~0.04 of mean
    cosine, per-channel ~0.005); the full 8-bit range, since VNNI and AMX do not saturate (on
    AVX2-only CPUs the gate decides whether int8 is close enough)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _root_logger_muted():
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=False, op_types_to_quantize=["MatMul", "Attention"],
                         # fused ops are of onnxruntime's domain: shape inference cannot type them
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


@contextmanager
def _root_logger_muted() -> Iterator[None]:
    """Drop what is logged on the root logger meanwhile: onnxruntime's quantiser calls
    ``logging.warning`` (advice to pre-process the graph, which the gate makes moot), and on a
    root logger without handlers that also installs one, after which every library's warnings
    print in the user's terminal. A handler is held on the root logger for the duration, so
    nothing is installed, and records reaching the root logger itself are dropped."""
    root = logging.getLogger()
    held = logging.NullHandler()

    def drop(record: logging.LogRecord) -> bool:
        return False

    root.addHandler(held)
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        root.removeHandler(held)
