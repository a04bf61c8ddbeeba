"""Host time of fusedrnn's own Python per time step, measured on the CPU with the step kernels as no-ops.

    PYTHONPATH=. python benchmarks/host_overhead.py [--steps 256] [--repeats 7]

On a GPU the step loop is bound by the host (benchmarks/NOTES.md): each step costs the driver's Python
plus one kernel launch. This script times the first part alone, anywhere: a fused LSTM layer runs
forward+backward over CPU tensors with both time-loop kernels replaced by functions that do nothing, so
what is left is the driver (argument handling, StepLauncher, the backward's bookkeeping) and, for the
stepwise strategy, torch's per-step GEMM on tiny CPU tensors. Triton's own launch cost is not included.
Prints the median over repeats, per time step (one forward and one backward launch), and for the persistent
strategy (one launch per layer and direction) per call of a short sequence. Then the same for
the cells' one-launch step (fusedrnn/strategies/single_step.py, its two kernels no-ops): the fused
LSTMCell's forward per call, beside the custom op called directly and its implementation alone, and the
fused LSTMCell's forward+backward (the backward's GEMMs on tiny CPU tensors included); nn.LSTMCell beside
them, whose time includes its arithmetic on tiny CPU tensors (so the ratio is not a GPU figure).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TRITON_INTERPRET", "1")  # the fused backends accept CPU tensors

import torch  # noqa: E402

import fusedrnn  # noqa: E402
from fusedrnn import ops  # noqa: E402
from fusedrnn.strategies import driver, single_step  # noqa: E402


class NoopKernel:
    """Stands in for a Triton kernel: `kernel[grid](...)` does nothing and returns no compiled kernel."""

    arg_names: list[str] = []

    def __getitem__(self, grid):
        return lambda *args, **constexprs: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    driver.forward_kernel = driver.backward_kernel = NoopKernel()
    x = torch.randn(args.steps, 4, 16, requires_grad=True)
    for backend in ("triton", "triton-fusedstep"):
        lstm = fusedrnn.LSTM(16, 16, backend=backend)
        per_step = []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            lstm(x)[0].sum().backward()
            per_step.append((time.perf_counter() - start) / args.steps * 1e6)
        print(f"{backend:18s} {statistics.median(per_step[1:]):6.1f} us per step (forward+backward), "
              f"median of {args.repeats}, T={args.steps}")
    # One launch per layer and direction: at short sequences (a tagger's sentences) the call's own host time counts.
    stack = fusedrnn.LSTM(16, 16, num_layers=2, bidirectional=True, backend="triton-persistent")
    short = torch.randn(8, 4, 16, requires_grad=True)
    print(f"triton-persistent, 2 bidirectional layers, T=8: "
          f"{_per_call(lambda: stack(short)[0].sum().backward(), 20, args.repeats):6.1f} us per forward+backward "
          f"call, median of {args.repeats}")

    single_step.forward_kernel = single_step.backward_kernel = NoopKernel()
    cell = fusedrnn.LSTMCell(16, 16, backend="triton")
    torch_cell = torch.nn.LSTMCell(16, 16)
    x, h, c = (torch.randn(4, 16) for _ in range(3))
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    calls = {
        "fused LSTMCell": lambda: cell(x, (h, c)),
        "fusedrnn::cell_step op": lambda: ops.cell_step_op("LSTM", x, h, c, *weights, False, False),
        "its implementation": lambda: single_step.forward("LSTM", x, h, c, *weights, False, False),
        "nn.LSTMCell (computes)": lambda: torch_cell(x, (h, c)),
    }
    with torch.no_grad():
        for name, call in calls.items():
            print(f"{name:24s} {_per_call(call, 200, args.repeats):6.1f} us per forward step (no_grad), "
                  f"median of {args.repeats}")
    leaves = [t.requires_grad_() for t in (x, h, c)]
    for name, module in (("fused LSTMCell", cell), ("nn.LSTMCell (computes)", torch_cell)):
        def step(module=module):
            sum(s.sum() for s in module(leaves[0], tuple(leaves[1:]))).backward()

        print(f"{name:24s} {_per_call(step, 200, args.repeats):6.1f} us per forward+backward step, "
              f"median of {args.repeats}")


def _per_call(call, calls: int, repeats: int) -> float:
    """Median over repeats of the mean time of `calls` calls, in us (the first repeat warms up, uncounted)."""
    per_call = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        per_call.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(per_call[1:])


if __name__ == "__main__":
    main()
