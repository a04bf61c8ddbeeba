"""Where the time of one forward+backward goes: GPU kernel time against wall time, per kernel.

    PYTHONPATH=. python3 benchmarks/profile_steps.py [--shape 64x512x256] [--cells LSTM,GRU] [--sweep]

For each provider (cuDNN and every fused strategy) and dtype it runs one sequence case as the benchmark
suite builds it (same weights, same inputs), warms up, then records one forward+backward with
torch.profiler and prints: wall time, the summed time of the GPU kernels (busy), their number, and the
kernels that took longest. busy much below wall means the run waits on launches from the host; a kernel
family that grows between dtypes points at the kernel itself. --sweep then times the fusedstep strategy's
forward+backward for a few tile shapes (the `_blocks` choice, patched here only), to pick the next default.
Run by `make gpu-check` after the benchmarks; GPU_CHECK_DRY=1 runs it on the CPU in Triton's interpreter
at a tiny shape.
"""

import argparse
import os
import sys
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

DRY = os.environ.get("GPU_CHECK_DRY") == "1"
if DRY:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fusedrnn.bench.grid import Case, parse_dtype, parse_shape  # noqa: E402
from fusedrnn.bench.providers import FUSED_STRATEGIES, PROVIDERS  # noqa: E402
from fusedrnn.bench.suites import forward_backward  # noqa: E402
from fusedrnn.bench.timing import time_call  # noqa: E402
from fusedrnn.bench.workload import draw_inputs, make_template  # noqa: E402
from fusedrnn.kernels import stepwise  # noqa: E402

# (BLOCK_B, BLOCK_H, BLOCK_K, num_warps) tried by --sweep; the first is the current default for 16-bit types.
SWEEP_TILES = [(16, 32, 64, 4), (16, 32, 32, 4), (16, 64, 64, 4), (32, 32, 64, 4), (16, 16, 64, 2), (16, 32, 128, 4)]


def kernel_times(prof, device_type: str) -> dict[str, tuple[float, int]]:
    """Total device time (ms) and count per kernel name, from the profiler's device-side events."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if device_type == "cuda" and event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if device_type != "cuda" and (event.device_type == torch.autograd.DeviceType.CUDA or event.cpu_parent):
            continue  # on the CPU (dry run) the top-level operators stand in for kernels
        name = event.name if len(event.name) <= 60 else event.name[:57] + "..."
        time_us = event.device_time_total if device_type == "cuda" else event.cpu_time_total
        totals[name][0] += time_us / 1000
        totals[name][1] += 1
    return {name: (ms, count) for name, (ms, count) in totals.items()}


def profile_case(case: Case, provider_name: str, device: torch.device, top: int) -> None:
    one_pass = forward_backward(PROVIDERS[provider_name].build(case, make_template(case, device)))
    inputs = draw_inputs(case, device, seed=1)
    for _ in range(1 if DRY else 3):
        one_pass(inputs)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        one_pass(inputs)
        sync()
        wall_ms = (time.perf_counter() - start) * 1000
    kernels = kernel_times(prof, device.type)
    busy = sum(ms for ms, _ in kernels.values())
    launches = sum(count for _, count in kernels.values())
    print(f"\n{case.label} | {provider_name}: wall {wall_ms:.2f} ms (under the profiler), "
          f"GPU busy {busy:.2f} ms ({busy / wall_ms:.0%}), {launches} kernels")
    for name, (ms, count) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {ms:9.3f} ms  {count:6d} x {ms * 1000 / count:8.2f} us  {name}")


def sweep_tiles(case: Case, device: torch.device, repeats: int) -> None:
    """Median forward+backward time of the fusedstep strategy for each tile shape in SWEEP_TILES."""
    one_pass = forward_backward(PROVIDERS["fusedrnn-fusedstep"].build(case, make_template(case, device)))
    inputs = draw_inputs(case, device, seed=1)
    default_blocks = stepwise._blocks
    print(f"\n{case.label} | fusedrnn-fusedstep tile sweep (median of {repeats} forward+backward)")
    try:
        for block_b, block_h, block_k, warps in SWEEP_TILES:
            def blocks(B, H, dtype, gemm_in_kernel, allow_tf32, tile=(block_b, block_h, block_k, warps)):
                grid, meta = default_blocks(B, H, dtype, gemm_in_kernel, allow_tf32)
                if gemm_in_kernel:
                    grid = (-(-B // tile[0]), -(-H // tile[1]))
                    meta.update(BLOCK_B=tile[0], BLOCK_H=tile[1], BLOCK_K=tile[2], num_warps=tile[3])
                return grid, meta

            stepwise._blocks = blocks
            timing = time_call(one_pass, [inputs], warmup=1, repeats=repeats, device=device)  # warm-up compiles
            print(f"  BLOCK_B={block_b:3d} BLOCK_H={block_h:3d} BLOCK_K={block_k:3d} warps={warps}: "
                  f"{timing.median_ms:8.2f} ms")
    finally:
        stepwise._blocks = default_blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="3x37x7" if DRY else "64x512x256", help="BxHxT")
    parser.add_argument("--cells", default="LSTM" if DRY else "LSTM,GRU")
    parser.add_argument("--dtypes", default="float32" if DRY else "float32,bfloat16")
    parser.add_argument("--top", type=int, default=6, help="kernels listed per run")
    parser.add_argument("--sweep", action="store_true", help="also time fusedstep tile shapes (LSTM, each dtype)")
    args = parser.parse_args()
    device = torch.device("cpu" if DRY else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("profile_steps needs a CUDA GPU; GPU_CHECK_DRY=1 runs it on the CPU at a tiny shape.")
        return 2
    batch, hidden, seq_len = parse_shape(args.shape)
    providers = ([] if DRY else ["cudnn"]) + [f"fusedrnn-{s}" for s in FUSED_STRATEGIES]
    default_launch = stepwise.DIRECT_LAUNCH
    for direct in (False, True):  # StepLauncher's direct launches off and on (opt-in until a GPU run checks them)
        stepwise.DIRECT_LAUNCH = direct
        for dtype in map(parse_dtype, args.dtypes.split(",")):
            case = Case("sequence", "LSTM", dtype, batch, hidden, hidden, seq_len)
            print(f"\nFUSEDRNN_DIRECT_LAUNCH={int(direct)}:", end="")
            profile_case(case, "fusedrnn-fusedstep", device, 2)
    stepwise.DIRECT_LAUNCH = default_launch
    for cell in args.cells.split(","):
        for dtype in map(parse_dtype, args.dtypes.split(",")):
            case = Case("sequence", cell.strip(), dtype, batch, hidden, hidden, seq_len)
            for provider in providers:
                profile_case(case, provider, device, args.top)
    if args.sweep:
        for dtype in map(parse_dtype, args.dtypes.split(",")):
            sweep_tiles(Case("sequence", "LSTM", dtype, batch, hidden, hidden, seq_len), device, 2 if DRY else 7)
    return 0


if __name__ == "__main__":
    sys.exit(main())
