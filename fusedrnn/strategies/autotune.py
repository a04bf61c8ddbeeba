"""The opt-in autotuner for `backend="auto"`, in the spirit of `torch.backends.cudnn.benchmark`.

With FUSEDRNN_AUTOTUNE=1 (or `fusedrnn.strategies.autotune.enable()`), the first call with a new (GPU
model, kind, cell, dtype, shape bucket) runs every candidate (torch's own and each Triton strategy) on
random data of that shape, keeps those whose output agrees with torch's in float64 (within the dtype's
tolerance or 4x torch's own error), times their forward+backward, and remembers the fastest. The bucket
rounds batch and hidden size up to powers of two. Choices live in memory, and in a JSON file when
FUSEDRNN_AUTOTUNE_CACHE names one (read at first use, rewritten after each new choice). The measurement
synchronises with the GPU, once per bucket; while a CUDA graph is being captured or torch.compile traces,
the committed table (dispatch.py) decides instead.
"""

import functools
import json
import os
from pathlib import Path

import torch

from fusedrnn.strategies import NAMES, dispatch

STEPS = 64  # time steps of the measured sequences: enough for per-step costs to dominate
REPEATS = 5
_choices: dict[str, str] = {}
_loaded = False
_forced: bool | None = None


def enable(on: bool = True) -> None:
    """Turn the autotuner on or off for this process (overrides FUSEDRNN_AUTOTUNE)."""
    global _forced
    _forced = on


def enabled() -> bool:
    if _forced is not None:
        return _forced
    return os.environ.get("FUSEDRNN_AUTOTUNE", "0") not in ("", "0")


def _cache_path() -> Path | None:
    path = os.environ.get("FUSEDRNN_AUTOTUNE_CACHE")
    return Path(path) if path else None


def _bucket(n: int) -> int:
    """n rounded up to a power of two."""
    return 1 << max(n - 1, 0).bit_length()


def _key(gpu: str, kind: str, mode: str, dtype: torch.dtype, batch: int, hidden: int) -> str:
    return f"{gpu}|{kind}|{mode}|{dtype}|{_bucket(batch)}|{_bucket(hidden)}"


def choice(gpu: str, kind: str, mode: str, dtype: torch.dtype, batch: int, hidden: int) -> str:
    """The implementation to run: measured on this card once per bucket, then remembered."""
    global _loaded
    path = _cache_path()
    if not _loaded:
        _loaded = True
        if path is not None and path.exists():
            _choices.update(json.loads(path.read_text()))
    key = _key(gpu, kind, mode, dtype, batch, hidden)
    if key not in _choices:
        capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
        if capturing or torch.compiler.is_compiling():
            return dispatch.lookup(gpu, kind, mode, dtype, batch, hidden)
        _choices[key] = measure(kind, mode, dtype, _bucket(batch), _bucket(hidden))
        if path is not None:
            path.write_text(json.dumps(_choices, indent=1, sort_keys=True) + "\n")
    return _choices[key]


def measure(kind: str, mode: str, dtype: torch.dtype, batch: int, hidden: int) -> str:
    """The fastest correct candidate for this shape on the current GPU."""
    from fusedrnn.cells import REGISTRY
    from fusedrnn.nn import FUSED_CELLS, FUSED_LAYERS
    from fusedrnn.testing import compare

    entry = REGISTRY[mode]
    sequence = kind == "sequence"
    torch_class = functools.partial(entry.layer if sequence else entry.cell, **entry.options)
    fused_class = functools.partial((FUSED_LAYERS if sequence else FUSED_CELLS)[mode], **entry.options)
    generator = torch.Generator(device="cuda").manual_seed(0)
    shape = (STEPS, batch, hidden) if kind == "sequence" else (batch, hidden)
    x = torch.randn(shape, device="cuda", generator=generator)
    reference = torch_class(hidden, hidden, device="cuda", dtype=torch.float64)
    expected = _output(reference(x.double()))
    candidates = {"torch": torch_class(hidden, hidden, device="cuda", dtype=dtype)}
    for name in NAMES:
        candidates[name] = fused_class(hidden, hidden, device="cuda", dtype=dtype, backend=name)
    times = {}
    torch_error = None
    for name, module in candidates.items():
        module.load_state_dict(reference.state_dict())
        try:
            error = compare(_output(module(x.to(dtype))), expected, dtype)
            torch_error = error.max_abs if name == "torch" else torch_error
            if not error.ok and error.max_abs > 4 * (torch_error or 0.0):
                continue
            times[name] = _time(module, x.to(dtype))
        except Exception:  # a candidate that cannot run here (resources, an old driver) is no candidate
            continue
    return min(times, key=times.get) if times else dispatch.lookup("", kind, mode, dtype, batch, hidden)


def _output(result) -> torch.Tensor:
    return result[0] if isinstance(result, tuple) else result


def _time(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Median forward+backward milliseconds, after one untimed call (compilation)."""
    x = x.detach().requires_grad_()
    params = [p for p in module.parameters()]
    samples = []
    for k in range(REPEATS + 1):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = _output(module(x))
        torch.autograd.grad(out.float().square().sum(), [x, *params])
        end.record()
        torch.cuda.synchronize()
        if k:
            samples.append(start.elapsed_time(end))
    return sorted(samples)[len(samples) // 2]
