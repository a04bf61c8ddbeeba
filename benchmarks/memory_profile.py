"""What is alive at the peak of one forward+backward, fused against cuDNN, and which line allocated it.

    PYTHONPATH=. python3 benchmarks/memory_profile.py [--shape 16x256x512] [--dtype bf16] [--cell LSTM]

Why: on the H200 (benchmarks/NOTES.md, 2026-12-04) the persistent strategy's peak memory was about ten
times T x B x H elements plus a near constant ~130 MB, the same in fp32 and bf16, which puts it over
cuDNN's at small batch; the allocations that fusedrnn's Python makes come to the ten units alone (counted on
the CPU), so the constant is made somewhere this script has to see on the GPU. For each provider: the
case as the benchmark builds it, warmed up, then one forward+backward recorded by torch's CUDA allocator
history (torch.cuda.memory._record_memory_history); the allocations made in it are replayed to find the
peak, and the blocks alive there are printed largest first with the Python lines that allocated them.
Run by `make gpu-check`; GPU_CHECK_DRY=1 runs the replay on a made-up trace and the case in Triton's
interpreter at a tiny shape (the allocator history needs CUDA).
"""

import argparse
import os
import sys

import torch

DRY = os.environ.get("GPU_CHECK_DRY") == "1"
if DRY:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fusedrnn.bench.grid import Case, parse_dtype, parse_shape  # noqa: E402
from fusedrnn.bench.providers import PROVIDERS  # noqa: E402
from fusedrnn.bench.suites import forward_backward  # noqa: E402
from fusedrnn.bench.workload import draw_inputs, make_template  # noqa: E402

TORCH_FILES = (f"{os.sep}torch{os.sep}", f"{os.sep}lightning", "<frozen")


def live_at_peak(trace: list[dict]) -> tuple[int, list[dict]]:
    """Replay an allocator trace: (peak bytes allocated within it, the alloc events alive at that peak).
    Blocks allocated before the trace began are not counted; frees of them are ignored."""
    live: dict[int, dict] = {}
    current = peak = 0
    at_peak: list[dict] = []
    for event in trace:
        if event["action"] == "alloc":
            live[event["addr"]] = event
            current += event["size"]
            if current > peak:
                peak, at_peak = current, list(live.values())
        elif event["action"] == "free_completed" and event["addr"] in live:
            current -= live.pop(event["addr"])["size"]
    return peak, sorted(at_peak, key=lambda e: -e["size"])


def where(event: dict, depth: int = 3) -> str:
    """The innermost Python lines outside torch that led to an allocation, innermost first."""
    frames = [f for f in event.get("frames", []) if f.get("filename", "").endswith(".py")]
    ours = [f for f in frames if not any(part in f["filename"] for part in TORCH_FILES)]
    shown = ours[:depth] or frames[:1]
    return " <- ".join(f"{os.path.basename(f['filename'])}:{f['line']} {f['name']}" for f in shown) or "(no frames)"


def report(name: str, trace: list[dict], unit: int, top: int = 10) -> None:
    peak, blocks = live_at_peak(trace)
    print(f"\n### {name}: peak {peak / 2**20:.1f} MB = {peak / unit:.2f} x (T x B x H elements of the dtype)")
    for event in blocks[:top]:
        print(f"  {event['size'] / 2**20:8.2f} MB  {where(event)}")
    rest = blocks[top:]
    if rest:
        print(f"  {sum(e['size'] for e in rest) / 2**20:8.2f} MB  in {len(rest)} smaller blocks")


def recorded(call, inputs) -> list[dict]:
    torch.cuda.synchronize()
    torch.cuda.memory._record_memory_history(enabled="all", context="all", stacks="python")
    try:
        call(inputs)
        torch.cuda.synchronize()
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    return snapshot["device_traces"][torch.cuda.current_device()]


def made_up_trace() -> list[dict]:
    """A trace whose peak is known: 3 MB (a 1 MB block freed before a 2 MB one arrives beside another 1 MB)."""
    frames = [{"filename": "/x/fusedrnn/ops.py", "line": 7, "name": "f"}]
    mb = 2**20
    return [dict(action="alloc", addr=1, size=mb, frames=frames), dict(action="alloc", addr=2, size=mb, frames=[]),
            dict(action="free_completed", addr=1, size=mb), dict(action="alloc", addr=3, size=2 * mb, frames=frames),
            dict(action="free_completed", addr=99, size=5 * mb)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2x16x5" if DRY else "16x256x512", help="BxHxT")
    parser.add_argument("--dtype", default="fp32" if DRY else "bf16")
    parser.add_argument("--cell", default="LSTM")
    parser.add_argument("--providers", default="cudnn,fusedrnn-persistent")
    args = parser.parse_args()
    batch, hidden, seq_len = parse_shape(args.shape)
    dtype = parse_dtype(args.dtype)
    case = Case("sequence", args.cell, dtype, batch, hidden, hidden, seq_len)
    device = torch.device("cpu" if DRY else "cuda")
    unit = seq_len * batch * hidden * dtype.itemsize
    print(f"{args.cell} {case.dtype_name} B={batch} H={hidden} T={seq_len}, forward+backward as the benchmark runs it")
    if DRY:
        peak, blocks = live_at_peak(made_up_trace())
        assert peak == 3 * 2**20 and [b["addr"] for b in blocks] == [3, 2], (peak, blocks)
        report("made-up trace (dry run: the allocator history needs CUDA)", made_up_trace(), 2**20)
    template = make_template(case, device)
    inputs = draw_inputs(case, device, 0)
    for name in args.providers.split(","):
        if DRY and name == "cudnn":
            continue
        call = forward_backward(PROVIDERS[name].build(case, template))
        for _ in range(2):  # compiles, cuBLAS workspaces, caches: not what one call costs
            call(inputs)
        if DRY:
            print(f"\n### {name}: ran (tiny shape, interpreter)")
            continue
        report(name, recorded(call, inputs), unit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
