"""Where encoders run: the torch device to use and how many CPU threads torch may take.

Kept apart from the encoders so every model (text now, images later) picks devices and threads the
same way, and so this is the one place in ``kinsight.indexers`` that asks torch about hardware.
torch is imported only when a question needs it: the ONNX Runtime query path asks about threads
and whether a GPU may be present without paying for torch.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading

from kinsight.engine.errors import InvalidInputError

__all__ = ["DEVICE_ENV", "THREADS_ENV", "configure_cpu_threads", "cpu_threads", "gpu_may_be_present",
           "model_device", "pick_device", "usable_cores"]

logger = logging.getLogger(__name__)

# Our own variable wins over OMP_NUM_THREADS: OMP_NUM_THREADS is often set for other libraries in
# the same process (or by a cluster scheduler), KINSIGHT_THREADS only ever means us.
THREADS_ENV = "KINSIGHT_THREADS"
# Where models run: "cpu", "cuda", "cuda:N" or "mps"; unset, the best device present.
DEVICE_ENV = "KINSIGHT_DEVICE"

_DEVICE_PATTERN = re.compile(r"cpu|mps|cuda(?::([0-9]+))?")
_NUMBER = re.compile(r"[0-9]+")

_threads_lock = threading.Lock()
_configured_threads: int | None = None


def pick_device(requested: str | None = None) -> str:
    """The torch device to run a model on: ``requested`` when given and usable, else the best present.

    ``requested`` is one of ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (surrounding spaces and
    case are ignored). Without it: ``"cuda"`` when a CUDA GPU is visible, else ``"cpu"``; MPS is
    never chosen on its own because several sentence-transformers models are slower or inexact on it.

    Raises ``InvalidInputError`` for an unknown device name, or for a GPU that is not there.
    """
    import torch

    if requested is None or not requested.strip():
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = requested.strip().lower()
    match = _DEVICE_PATTERN.fullmatch(device)
    if match is None:
        raise InvalidInputError(
            f"unknown device {requested!r}; use 'cpu', 'cuda', 'cuda:N' (N the GPU number) or 'mps'"
        )
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"device {requested!r} asked for, but torch sees no CUDA GPU (torch "
                f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); use 'cpu', "
                "or install a CUDA build of torch that matches the driver"
            )
        index = match.group(1)
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise InvalidInputError(
                f"device {requested!r} asked for, but only {count} CUDA GPU(s) are visible "
                f"(cuda:0 to cuda:{count - 1}); check CUDA_VISIBLE_DEVICES"
            )
    elif device == "mps" and not torch.backends.mps.is_available():
        raise InvalidInputError(
            f"device {requested!r} asked for, but MPS (Apple GPU) is not available here; use 'cpu'"
        )
    return device


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else all)."""
    # os.cpu_count() counts every core of the machine even when a container or taskset pins us to
    # a few; oversubscribing threads then makes torch much slower, not faster.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _threads_from_env() -> int | None:
    """The thread count set explicitly in the environment, if any."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        if not _NUMBER.fullmatch(raw) or int(raw) < 1:
            raise InvalidInputError(
                f"{THREADS_ENV}={raw!r} is not a positive whole number of threads; "
                f"set it to e.g. {usable_cores()} or unset it to use every usable core"
            )
        return int(raw)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        # OpenMP allows a nested list such as "8,2"; the first level is the one torch's pool uses.
        first = omp.split(",", 1)[0].strip()
        if _NUMBER.fullmatch(first) and int(first) >= 1:
            return int(first)
        logger.warning("ignoring OMP_NUM_THREADS=%r: not a positive number of threads", omp)
    return None


def cpu_threads() -> int:
    """Threads a model may use on the CPU: ``KINSIGHT_THREADS``, else ``OMP_NUM_THREADS``, else one
    per usable core."""
    explicit = _threads_from_env()
    return explicit if explicit is not None else usable_cores()


def gpu_may_be_present() -> bool:
    """False when no CUDA or ROCm device node exists, so the CPU is certainly where models run;
    True when one might be usable (then only torch can tell). Costs a few file checks, not torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd") \
        or not os.path.isdir("/dev")  # no /dev to look in (Windows): ask torch


def configure_cpu_threads() -> int:
    """Give torch one intra-op thread per usable core (or the count set in the environment).

    ``KINSIGHT_THREADS``, else ``OMP_NUM_THREADS``, overrides the core count. The setting is made
    once per process; later calls return the number chosen the first time without touching torch,
    because changing the pool size while another thread is encoding is not safe.
    """
    global _configured_threads
    with _threads_lock:
        if _configured_threads is not None:
            return _configured_threads
        import torch

        explicit = _threads_from_env()
        threads = explicit if explicit is not None else usable_cores()
        torch.set_num_threads(threads)
        _configured_threads = threads
        logger.info(
            "torch will use %d CPU thread(s) (%s)",
            threads,
            "set in the environment" if explicit is not None else "one per usable core",
        )
        return threads


def model_device() -> str:
    """The device a model is loaded on: ``KINSIGHT_DEVICE`` when set, else the best present; on
    the CPU, torch's thread pool is sized first (``configure_cpu_threads``)."""
    device = pick_device(os.environ.get(DEVICE_ENV))
    if not device.startswith(("cuda", "mps")):
        configure_cpu_threads()
    return device
