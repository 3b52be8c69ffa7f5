"""The image tower's numeric precision at index time, and the runtime name an index records.

``--precision`` takes ``auto | fp32 | bf16 | int8``. ``auto`` is bf16 on CUDA and on CPUs with
native bf16 instructions (AVX512-BF16 or AMX-BF16: there bf16 runs about twice as fast as fp32, see
bench/embed_cost.py), else fp32. ``int8`` runs the tower through ONNX Runtime with int8 weights
(:mod:`groundzero.model.onnx_tower`; CPUs only, fixed-resolution checkpoints). An index records
what embedded its frames as a *runtime* (``torch-bf16``, ``torch-fp32``, ``onnx-int8``;
:attr:`groundzero.model.identity.ModelIdentity.runtime`), and a later run on it keeps that
runtime (``auto``) or is refused (another explicit precision): frames embedded at different
precisions would sit side by side in one index.

Torch-free except :func:`torch_dtype`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from groundzero.errors import ConfigError, IndexMismatchError

if TYPE_CHECKING:
    import torch

#: the values of ``--precision`` / ``IndexConfig.precision``
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: each concrete precision's runtime name
_RUNTIMES = {"fp32": "torch-fp32", "bf16": "torch-bf16", "int8": "onnx-int8"}
#: the runtime an index built before runtimes were recorded used (CPU indexing was fp32 then)
LEGACY_RUNTIME = "torch-fp32"
#: /proc/cpuinfo flags of CPUs with native bf16 dot products
_FAST_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_fast_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (flag ``avx512_bf16`` or ``amx_bf16``).

    False where ``cpuinfo`` cannot be read (not Linux) or names neither flag: bf16 then runs
    in emulation, slower than fp32.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and _FAST_BF16_FLAGS & set(value.split()):
            return True
    return False


def default_precision(device_type: str, fast_bf16_cpu: bool) -> str:
    """``auto`` for a new index: bf16 on CUDA and on a CPU with native bf16, else fp32.

    >>> default_precision("cuda", False), default_precision("cpu", True), default_precision("cpu", False)
    ('bf16', 'bf16', 'fp32')
    """
    return "bf16" if device_type == "cuda" or fast_bf16_cpu else "fp32"


def runtime_name(precision: str) -> str:
    """The runtime an index records for a concrete precision.

    >>> runtime_name("bf16"), runtime_name("int8")
    ('torch-bf16', 'onnx-int8')
    """
    if precision not in _RUNTIMES:
        raise ConfigError(f"precision must be one of {', '.join(_RUNTIMES)} here, got {precision!r}",
                          field="precision")
    return _RUNTIMES[precision]


def precision_of(runtime: str) -> str:
    """The precision of a recorded runtime (inverse of :func:`runtime_name`).

    >>> precision_of("torch-fp32"), precision_of("onnx-int8")
    ('fp32', 'int8')
    """
    precision = {v: k for k, v in _RUNTIMES.items()}.get(runtime)
    if precision is None:
        raise IndexMismatchError(f"the index was embedded with runtime {runtime!r}, which this GroundZero "
                                 "cannot run; use the GroundZero that built it, or build a new index")
    return precision


def index_precision(requested: str, device_type: str, recorded_runtime: str | None,
                    fast_bf16_cpu: bool) -> str:
    """The concrete precision (``fp32`` | ``bf16`` | ``int8``) of an index run.

    Args:
        requested: ``IndexConfig.precision``: auto | fp32 | bf16 | int8.
        device_type: "cuda" or "cpu", where the image tower runs.
        recorded_runtime: the existing index's runtime, None for a new index.
        fast_bf16_cpu: :func:`cpu_has_fast_bf16` of the machine that embeds.

    ``auto`` keeps an existing index's runtime, else :func:`default_precision`. An explicit
    precision is returned as is; one that differs from the index's is refused when the writer
    opens the index (:func:`groundzero.store.manifest.check_model`).

    >>> index_precision("auto", "cpu", "torch-bf16", False), index_precision("auto", "cpu", None, False)
    ('bf16', 'fp32')
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}",
                          field="precision")
    if requested != "auto":
        precision = requested
    elif recorded_runtime is not None:
        precision = precision_of(recorded_runtime)
    else:
        precision = default_precision(device_type, fast_bf16_cpu)
    if precision == "int8" and device_type == "cuda":
        raise ConfigError("int8 runs on CPUs (ONNX Runtime); on a GPU use bf16"
                          + (" in a new index" if requested == "auto" else ""), field="precision")
    return precision


def torch_dtype(precision: str) -> torch.dtype:
    """torch.float32 or torch.bfloat16 for a concrete precision (int8: float32, the model the int8
    tower is exported from)."""
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}
    if precision not in dtypes:
        raise ConfigError(f"precision must be fp32 or bf16 here, got {precision!r}", field="precision")
    return dtypes[precision]
