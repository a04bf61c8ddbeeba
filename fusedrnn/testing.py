"""Tolerances and error measures, one place for every test and the benchmarks' gradient check."""

from dataclasses import dataclass

import torch

# (atol, rtol) per storage dtype for small shapes (T <= ~16) against a float64 reference.
TOLERANCES = {
    torch.float64: (1e-10, 1e-8),
    torch.float32: (5e-5, 5e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 6e-2),
}


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return TOLERANCES[dtype]


@dataclass
class ErrorReport:
    max_abs: float
    max_rel: float  # max |a - b| / max |b|: the error relative to the tensor's scale
    ok: bool

    def __str__(self) -> str:
        return f"max abs err {self.max_abs:.3g}, max rel err {self.max_rel:.3g}"


def compare(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None) -> ErrorReport:
    """max |a - b| <= atol + rtol * max |b|, with the tolerance of `dtype` (default: actual's dtype).

    Normwise rather than elementwise: a gradient that sums many rounded terms (a bias gradient, say)
    can be small where its terms are large, and its error scales with the terms. NaN anywhere in
    `actual` where `expected` is not NaN fails, so unwritten (NaN-poisoned) outputs fail.
    """
    atol, rtol = tolerance(dtype or actual.dtype)
    a = actual.detach().to(torch.float64).cpu()
    b = expected.detach().to(torch.float64).cpu()
    if a.shape != b.shape:
        raise AssertionError(f"shape {tuple(a.shape)} != expected {tuple(b.shape)}")
    if a.numel() == 0:
        return ErrorReport(0.0, 0.0, True)
    diff = (a - b).abs()
    same_nan = a.isnan() & b.isnan()
    diff = torch.where(same_nan, torch.zeros_like(diff), diff)
    diff = torch.where(diff.isnan(), torch.full_like(diff, float("inf")), diff)
    max_abs = float(diff.max())
    scale = float(b.abs().nan_to_num(0.0).max())
    return ErrorReport(max_abs, max_abs / max(scale, atol), max_abs <= atol + rtol * scale)


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, name: str = ""
) -> None:
    report = compare(actual, expected, dtype)
    if not report.ok:
        raise AssertionError(f"{name or 'tensor'} ({dtype or actual.dtype}): {report}")
