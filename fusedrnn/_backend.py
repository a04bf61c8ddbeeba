"""Which implementation runs a forward: the fused Triton kernels or torch's own.  `auto` picks Triton for
CUDA tensors and torch (the very code `torch.nn` runs) everywhere else. Two Triton strategies:
`triton-fusedstep` does the recurrent GEMM inside the step kernel (one launch per step), `triton` is the
stepwise strategy (a cuBLAS GEMM and a fused pointwise kernel per step). On CUDA `auto` picks fusedstep
for bfloat16 and float16, which an H100 run showed correct in both and faster in bfloat16 (float16 takes
the same 16-bit code; its speed was not timed; benchmarks/NOTES.md), and stepwise
for float32 (fusedstep's TF32 GEMM has not run on a GPU yet) and float64 (its in-kernel GEMM has never
been compiled on one). A Triton backend on CPU tensors runs the kernels in Triton's
interpreter, which needs TRITON_INTERPRET=1 set before triton is first imported. The environment
variable FUSEDRNN_BACKEND sets the default.
"""

import importlib.util
import os
from typing import Literal, get_args

import torch

# Spelled out for annotations (LightningCLI reads them); the Triton values are fusedrnn.strategies.NAMES.
Backend = Literal["auto", "triton", "triton-fusedstep", "triton-persistent", "torch"]
BACKENDS = get_args(Backend)
STEPWISE, FUSEDSTEP, PERSISTENT = "triton", "triton-fusedstep", "triton-persistent"
TRITON_BACKENDS = (STEPWISE, FUSEDSTEP, PERSISTENT)
ENV_VAR = "FUSEDRNN_BACKEND"
# Where `auto` picks fusedstep on CUDA: a committed GPU result shows it correct there (and faster in bf16).
GPU_CHECKED_FUSEDSTEP_DTYPES = (torch.bfloat16, torch.float16)


def check_backend(backend: str | None) -> str | None:
    """Validate a constructor's backend argument (None means: read FUSEDRNN_BACKEND at call time)."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def default_backend() -> str:
    backend = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"{ENV_VAR} must be one of {BACKENDS}, got {backend!r}")
    return backend


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve(backend: str | None, tensor: torch.Tensor) -> str:
    """The implementation that runs for this backend choice and input tensor: "torch" or one of
    TRITON_BACKENDS."""
    choice = backend or default_backend()
    if choice == "torch":
        return "torch"
    on_gpu = tensor.device.type == "cuda"
    if choice == "auto":
        if not (on_gpu and triton_available()):
            return "torch"
        return FUSEDSTEP if tensor.dtype in GPU_CHECKED_FUSEDSTEP_DTYPES else STEPWISE
    if not triton_available():
        raise RuntimeError(f"backend={choice!r} needs the triton package: pip install triton")
    if not on_gpu and not interpreter_enabled():
        raise RuntimeError(
            f"backend={choice!r} got {tensor.device.type} tensors: the Triton kernels run on CUDA. To run them "
            "on the CPU in Triton's interpreter, set TRITON_INTERPRET=1 before importing triton; "
            "otherwise use backend='torch' or 'auto'."
        )
    return choice
