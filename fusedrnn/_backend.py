"""Which implementation runs a forward: a fused Triton strategy or torch's own (the very code `torch.nn`
runs: cuDNN, cuBLAS). The Triton strategies (fusedrnn/strategies/): `triton` (stepwise: a cuBLAS GEMM and
a fused pointwise kernel per step), `triton-fusedstep` (the recurrent GEMM inside the step kernel, one
launch per step) and `triton-persistent` (one launch for all steps). `auto` runs torch on CPU tensors and,
on CUDA, what the committed dispatch table measured fastest with a passing gradient check for this GPU
model, cell, dtype and the nearest measured (batch, hidden) (fusedrnn/strategies/dispatch.py), or the
opt-in autotuner's choice (FUSEDRNN_AUTOTUNE). A Triton backend on CPU tensors runs the kernels in Triton's
interpreter, which needs TRITON_INTERPRET=1 set before triton is first imported. The environment variable
FUSEDRNN_BACKEND sets the default.
"""

import functools
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


@functools.lru_cache(maxsize=16)
def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device)


def regularised_kernels_checked() -> bool:
    """Whether a GPU run has checked the kernels that recurrent_dropout, zoneout and layer_norm change, so that
    auto may run them (fusedrnn/strategies/dispatch.py)."""
    from fusedrnn.strategies import dispatch

    return dispatch.REGULARISED_KERNELS_CHECKED_ON_GPU


def resolve(backend: str | None, tensor: torch.Tensor, mode: str = "LSTM", kind: str = "sequence",
            batch: int = 1, hidden: int = 1) -> str:
    """The implementation that runs for this backend choice and input: "torch" or one of TRITON_BACKENDS.
    mode, kind ("sequence" or "step"), batch and hidden: the call, which `auto` looks up on CUDA."""
    choice = backend or default_backend()
    if choice == "torch":
        return "torch"
    on_gpu = tensor.device.type == "cuda"
    if choice == "auto":
        if not (on_gpu and triton_available()):
            return "torch"
        from fusedrnn.strategies import autotune, dispatch

        key = (gpu_name(tensor.device), kind, mode, tensor.dtype, batch, hidden)
        return autotune.choice(*key) if autotune.enabled() else dispatch.lookup(*key)
    if not triton_available():
        raise RuntimeError(f"backend={choice!r} needs the triton package: pip install triton")
    if not on_gpu and not interpreter_enabled():
        raise RuntimeError(
            f"backend={choice!r} got {tensor.device.type} tensors: the Triton kernels run on CUDA. To run them "
            "on the CPU in Triton's interpreter, set TRITON_INTERPRET=1 before importing triton; "
            "otherwise use backend='torch' or 'auto'."
        )
    return choice
