"""What gets measured: benchmark cases and the named grids that list them."""

import dataclasses
import itertools
from dataclasses import dataclass

import torch

from fusedrnn.cells import MODES

CELLS = MODES
# The tiny and gpu-check grids' cells: one per cell file (RNN_RELU runs RNN_TANH's kernels with another variant).
TINY_CELLS = tuple(mode for mode in MODES if mode != "RNN_RELU")
GATED = ("LSTM", "GRU")
DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

# The point FlashRNN published for cuDNN (fp16, H100). Shown next to our own cuDNN time, never as ours.
PUBLISHED = {
    "cell": "LSTM",
    "batch": 16,
    "seq_len": 1024,
    "hidden": 768,
    "dtype": torch.bfloat16,
    "forward_ms": 2.01,
    "forward_backward_ms": 5.19,
    "source": "FlashRNN paper: cuDNN in fp16 on an H100, B=16 T=1024 H=768",
}


@dataclass(frozen=True)
class Case:
    """One shape, cell and dtype. A "sequence" case runs whole LSTM/GRU layers over seq_len steps;
    a "step" case runs one LSTMCell/GRUCell step (the cell suite)."""

    kind: str  # "sequence" or "step"
    cell: str  # "LSTM" or "GRU"
    dtype: torch.dtype
    batch: int
    hidden: int
    input_size: int
    seq_len: int = 1
    layers: int = 1
    bidirectional: bool = False
    timed: bool = True  # False: correctness only (the grad check), no timing
    interpreter_ok: bool = False  # small enough for Triton's interpreter (the fused kernels on CPU)
    exclude: tuple[str, ...] = ()  # providers left out of this case, e.g. to keep a grid's time budget

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def shape_label(self) -> str:
        label = f"B={self.batch} H={self.hidden}"
        if self.kind == "sequence":
            label += f" T={self.seq_len}"
        if self.input_size != self.hidden:
            label += f" I={self.input_size}"
        if self.layers > 1:
            label += f" L={self.layers}"
        if self.bidirectional:
            label += " bidir"
        return label

    @property
    def module_name(self) -> str:
        return self.cell if self.kind == "sequence" else f"{self.cell}Cell"

    @property
    def label(self) -> str:
        return f"{self.module_name} {self.dtype_name} {self.shape_label}"


@dataclass(frozen=True)
class Grid:
    name: str
    about: str
    cases: tuple[Case, ...]
    warmup: int
    repeats: int


def sequence_cases(cells, dtypes, shapes, **options) -> list[Case]:
    """Cases for every cell x dtype x (batch, hidden, seq_len), with input size = hidden."""
    return [
        Case("sequence", cell, dtype, batch, hidden, hidden, seq_len, **options)
        for cell, dtype, (batch, hidden, seq_len) in itertools.product(cells, dtypes, shapes)
    ]


def step_cases(cells, dtypes, shapes, **options) -> list[Case]:
    """Single-step cases for every cell x dtype x (batch, hidden)."""
    return [
        Case("step", cell, dtype, batch, hidden, hidden, **options)
        for cell, dtype, (batch, hidden) in itertools.product(cells, dtypes, shapes)
    ]


FP32_BF16 = (torch.float32, torch.bfloat16)
# Every Triton backend runs the same one-launch kernel for a cell step: the grids that must be quick time it once.
SAME_STEP_KERNEL = ("fusedrnn-fusedstep", "fusedrnn-persistent")
# Triton's interpreter runs a program in tens of milliseconds: past about this many batch x hidden x
# time elements a single call takes minutes.
INTERPRETER_MAX_ELEMENTS = 16 * 64 * 16


def interpreter_sized(batch: int, hidden: int, seq_len: int = 1) -> bool:
    return batch * hidden * seq_len <= INTERPRETER_MAX_ELEMENTS


def _default_sequences(**options) -> list[Case]:
    """The default grid's sequence cases: B x H x T=512 in fp32 and bf16, FlashRNN's point, 2-layer bidir."""
    cases = sequence_cases(CELLS, FP32_BF16, itertools.product((16, 64, 256), (256, 512, 1024), (512,)), **options)
    published = (PUBLISHED["batch"], PUBLISHED["hidden"], PUBLISHED["seq_len"])
    cases += sequence_cases((PUBLISHED["cell"],), (PUBLISHED["dtype"],), [published], **options)
    cases += sequence_cases(CELLS, (torch.bfloat16,), [(64, 512, 512)], layers=2, bidirectional=True, **options)
    return cases


def _default() -> Grid:
    cases = _default_sequences() + step_cases(CELLS, FP32_BF16, itertools.product((16, 256), (256, 1024)))
    return Grid("default", "the full GPU grid: B x H x T=512, fp32 and bf16, plus FlashRNN's point and 2-layer bidir",
                tuple(cases), warmup=5, repeats=30)


def _gpu_check() -> Grid:
    # What fits the gpu-check's few minutes (about 30 cases at ~6 s each on an H200, 2026-12-04), ordered so
    # that a run cut by its time limit still has every cell and dtype: FlashRNN's point, B=64 H=512 for every
    # cell (sequence, then the single step), then the gated cells at the grid's corners. fusedstep runs at
    # B=64 H=512 only, as a yardstick; stepwise and the cell loops not at all (measured before, far behind:
    # benchmarks/NOTES.md). The default grid measures the rest.
    slow = ("fusedrnn-stepwise", "cell-loop", "compiled-cell-loop")
    sequences = [case for case in _default_sequences() if case.layers == 1 and case.cell in TINY_CELLS]
    published = [case for case in sequences if case.seq_len != 512]
    centre = [case for case in sequences if (case.batch, case.hidden, case.seq_len) == (64, 512, 512)]
    corners = {(16, 256), (16, 1024), (256, 256), (256, 1024)}
    grid = [case for case in sequences
            if case.seq_len == 512 and (case.batch, case.hidden) in corners and case.cell in GATED]
    cases = [dataclasses.replace(case, exclude=slow + (() if case in centre else ("fusedrnn-fusedstep",)))
             for case in published + centre]
    cases += step_cases(TINY_CELLS, FP32_BF16, [(64, 512)], exclude=SAME_STEP_KERNEL)
    cases += [dataclasses.replace(case, exclude=slow + ("fusedrnn-fusedstep",)) for case in grid]
    return Grid("gpu-check", "B=64 H=512 for every cell, the gated cells at the grid's corners, FlashRNN's point first",
                tuple(cases), warmup=1, repeats=5)


def _bar() -> Grid:
    # Exactly the points of the speed bar (fusedrnn/bench/speed_bar.py), the persistent strategy against cuDNN:
    # 37 cases, a few minutes on an H200 (`make gpu-bar`, a device call of its own after gpu-check).
    others = ("fusedrnn-stepwise", "fusedrnn-fusedstep", "cell-loop", "compiled-cell-loop")
    cases = [dataclasses.replace(case, exclude=others) for case in _default_sequences()
             if case.layers == 1 and case.cell in GATED]
    return Grid("bar", "the speed bar's points: LSTM and GRU, B x H x T=512, fp32 and bf16, and FlashRNN's point",
                tuple(cases), warmup=1, repeats=5)


def _cpu() -> Grid:
    # Timed shapes run torch's CPU code only; the fused kernels get a correctness pass in Triton's
    # interpreter on tiny odd shapes (the interpreter is far too slow to time anything real).
    cases = sequence_cases(CELLS, (torch.float32,), [(16, 64, 64), (16, 128, 64), (16, 256, 64)])
    cases += step_cases(CELLS, (torch.float32,), [(16, 128)])
    tiny = dict(timed=False, interpreter_ok=True)
    cases += sequence_cases(CELLS, (torch.float32,), [(3, 37, 7)], **tiny)
    cases += sequence_cases(CELLS, (torch.float32,), [(2, 16, 5)], layers=2, bidirectional=True, **tiny)
    cases += step_cases(CELLS, (torch.float32,), [(3, 37)], exclude=SAME_STEP_KERNEL, **tiny)
    return Grid("cpu", "CPU: torch's code paths timed, the Triton kernels checked in the interpreter",
                tuple(cases), warmup=3, repeats=20)


def _tiny() -> Grid:
    # Every suite and provider on shapes the interpreter runs in a few seconds.
    tiny = dict(interpreter_ok=True)
    cases = sequence_cases(TINY_CELLS, (torch.float32,), [(3, 37, 7)], **tiny)
    cases += sequence_cases(TINY_CELLS, (torch.float32,), [(2, 16, 5)], layers=2, bidirectional=True, timed=False,
                            **tiny)
    cases += step_cases(TINY_CELLS, (torch.float32,), [(3, 37)], exclude=SAME_STEP_KERNEL, **tiny)
    return Grid("tiny", "tiny shapes on CPU for tests and dry runs", tuple(cases), warmup=0, repeats=2)


GRIDS = {"default": _default, "gpu-check": _gpu_check, "bar": _bar, "cpu": _cpu, "tiny": _tiny}


def named_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; choose from {', '.join(GRIDS)}")
    return GRIDS[name]()


def parse_shape(text: str) -> tuple[int, int, int]:
    """'64x512x256' -> (batch, hidden, seq_len)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"shape {text!r} is not BxHxT with positive integers, e.g. 64x512x256")
    batch, hidden, seq_len = (int(p) for p in parts)
    return batch, hidden, seq_len


def parse_dtype(text: str) -> torch.dtype:
    key = text.strip().lower()
    if key not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {text!r}; choose from {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[key]
