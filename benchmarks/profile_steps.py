"""Where the time of one forward+backward goes, what a grid barrier costs, and which tiles are fastest.

    PYTHONPATH=. python3 benchmarks/profile_steps.py [--shape 64x512x256] [--cells LSTM,GRU] [--sweep]

1. The grid barrier alone: a kernel that only meets at the barrier, for several program counts (us per
   barrier), so the persistent strategy's per-step time can be split into barrier and work.
2. For each provider (cuDNN and every fused strategy) and dtype: one sequence case as the benchmark
   suite builds it (same weights, same inputs), warmed up, then one forward+backward under
   torch.profiler: wall time, the summed time of the GPU kernels (busy), their number, the longest
   kernels. busy much below wall means the run waits on launches from the host. fusedstep runs with
   Triton's JIT launches and with direct launches (FUSEDRNN_DIRECT_LAUNCH) side by side.
3. --sweep: forward and forward+backward time of the persistent strategy for several tile shapes and
   pipeline depths (patching `tiles.choose`), each checked against the default tiles' outputs.
4. --switches (--only-switches: this alone): the persistent strategy with each opt-in switch against the default,
   LSTM in bf16 (FUSEDRNN_W_ON_CHIP, FUSEDRNN_K_STAGES=2) and fp32 (those, FUSEDRNN_TF32X3, and it with two stages):
   forward and forward+backward time, the largest error of the outputs and every gradient against float64
   beside cuDNN's, and where each kernel read W_hh.
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

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.runtime.errors import OutOfResources  # noqa: E402

from fusedrnn.bench.gradcheck import GradCheck, measure, outputs_and_gradients, reference_results  # noqa: E402
from fusedrnn.bench.grid import Case, parse_dtype, parse_shape  # noqa: E402
from fusedrnn.bench.providers import FUSED_STRATEGIES, PROVIDERS  # noqa: E402
from fusedrnn.bench.suites import forward_backward, forward_only  # noqa: E402
from fusedrnn.bench.timing import time_call  # noqa: E402
from fusedrnn.bench.workload import draw_inputs, make_template  # noqa: E402
from fusedrnn.strategies import driver, launch, persistent, tiles  # noqa: E402
from fusedrnn.strategies.kernels import grid_barrier  # noqa: E402
from fusedrnn.strategies.persistent import LAUNCH_OPTIONS  # noqa: E402
from fusedrnn.strategies.tiles import Tiles  # noqa: E402

# (BLOCK_B, BLOCK_H, BLOCK_K, num_warps, num_stages) tried by --sweep for the persistent strategy.
SWEEP_TILES = [(16, 16, 64, 4, 1), (16, 16, 64, 4, 2), (16, 16, 128, 4, 1), (16, 16, 128, 4, 2), (16, 16, 256, 4, 1),
               (16, 16, 32, 4, 1), (16, 32, 64, 4, 1), (32, 16, 64, 4, 1), (16, 16, 64, 2, 1), (16, 16, 64, 8, 1)]
BARRIER_PROGRAMS = (1,) if DRY else (16, 64, 132)
if DRY:
    SWEEP_TILES = SWEEP_TILES[:2]


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


@triton.jit
def barriers_only(sync_ptr, n):
    for k in range(n):
        grid_barrier(sync_ptr, (k + 1) * tl.num_programs(0), 0)


def barrier_cost(device: torch.device) -> None:
    """Microseconds per grid barrier, from a kernel that does nothing but meet at the barrier."""
    rounds = 8 if DRY else 20000
    print(f"\ngrid barrier alone ({rounds} barriers per launch, cooperative launch):")
    for programs in BARRIER_PROGRAMS:
        def run(_, programs=programs):
            sync = torch.zeros(2, dtype=torch.int32, device=device)
            barriers_only[(programs,)](sync, rounds, num_warps=4, **LAUNCH_OPTIONS)

        timing = time_call(run, [None], warmup=1, repeats=1 if DRY else 5, device=device)
        print(f"  {programs:4d} programs: {timing.median_ms * 1000 / rounds:7.3f} us per barrier")


def sweep_tiles(case: Case, device: torch.device, repeats: int) -> int:
    """Forward and forward+backward medians of the persistent strategy per tile shape in SWEEP_TILES, each
    checked against the default tiles (largest error relative to the output's scale). Returns how many tile
    shapes failed for another reason than resources (a tile that does not fit is only noted)."""
    template = make_template(case, device)
    runner = PROVIDERS["fusedrnn-persistent"].build(case, template)
    inputs = draw_inputs(case, device, seed=1)
    with torch.no_grad():
        expected = runner.forward(inputs.x, inputs.states)[0].float()
    default_choose = tiles.choose
    print(f"\n{case.label} | fusedrnn-persistent tile sweep (median of {repeats}; error vs default tiles)")
    failed = 0
    try:
        for block_b, block_h, block_k, warps, stages in SWEEP_TILES:
            tile = Tiles(block_b, block_h, block_k, warps, stages)

            def choose(strategy, B, H, dtype, programs=0, whole_rows=False, tile=tile):
                # The swept tile for the persistent strategy's plain kernels (the sweep runs no layer_norm).
                if strategy == "triton-persistent" and not whole_rows:
                    return tile
                return default_choose(strategy, B, H, dtype, programs, whole_rows)

            tiles.choose = choose
            label = f"  BLOCK_B={block_b:3d} BLOCK_H={block_h:3d} BLOCK_K={block_k:3d} warps={warps} stages={stages}"
            try:
                forward = time_call(forward_only(runner), [inputs], warmup=1, repeats=repeats, device=device)
                both = time_call(forward_backward(runner), [inputs], warmup=1, repeats=repeats, device=device)
                with torch.no_grad():
                    got = runner.forward(inputs.x, inputs.states)[0].float()
                error = float((got - expected).abs().max() / expected.abs().max())
                print(f"{label}: forward {forward.median_ms:8.3f} ms ({forward.median_ms * 1000 / case.seq_len:6.2f} "
                      f"us/step), fwd+bwd {both.median_ms:8.3f} ms, error {error:.1e}", flush=True)
            except OutOfResources as error:  # a tile shape that does not fit: note it, go on
                print(f"{label}: does not fit: {str(error).strip().splitlines()[0][:200]}")
            except Exception as error:  # anything else is a fault of the sweep or the kernel: go on, then fail
                failed += 1
                print(f"{label}: FAILED {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}")
    finally:
        tiles.choose = default_choose
    return failed


# The opt-in switches timed against the default, per dtype: (label, {(module, attribute): value}).
SWITCHES = {
    torch.bfloat16: [("default (W_hh from L2, K loop 1 stage)", {}),
                     ("FUSEDRNN_W_ON_CHIP=1", {(persistent, "W_ON_CHIP"): True}),
                     ("FUSEDRNN_K_STAGES=2", {(tiles, "PERSISTENT_K_STAGES"): 2})],
    torch.float32: [("default (TF32 products, K loop 1 stage)", {}),
                    ("FUSEDRNN_W_ON_CHIP=1", {(persistent, "W_ON_CHIP"): True}),
                    ("FUSEDRNN_TF32X3=1", {(driver, "TF32X3"): True}),
                    ("FUSEDRNN_K_STAGES=2", {(tiles, "PERSISTENT_K_STAGES"): 2}),
                    ("FUSEDRNN_TF32X3=1 FUSEDRNN_K_STAGES=2",
                     {(driver, "TF32X3"): True, (tiles, "PERSISTENT_K_STAGES"): 2})],
}


def time_switches(case: Case, device: torch.device, repeats: int) -> int:
    """The persistent strategy with each opt-in switch of SWITCHES[dtype] against the default: forward and
    forward+backward medians, the largest normwise error of the outputs and every gradient against float64
    (cuDNN's beside them on a GPU), where each kernel read W_hh. Returns how many variants failed."""
    template = make_template(case, device)
    inputs = draw_inputs(case, device, seed=1)
    expected = reference_results(case, template, inputs)
    runner = PROVIDERS["fusedrnn-persistent"].build(case, template)
    print(f"\n{case.label} | fusedrnn-persistent, opt-in switches (median of {repeats}; TF32 flag "
          f"{torch.backends.cudnn.allow_tf32}; error: largest normwise error against float64, and where)")
    if device.type == "cuda":
        cudnn = GradCheck(measure(outputs_and_gradients(PROVIDERS["cudnn"].build(case, template), inputs, case),
                                  expected, case.dtype), [])
        print(f"  {'cuDNN':40}: error {cudnn.rel:.2e} ({cudnn.worst})")
    failed = 0
    for label, settings in SWITCHES[case.dtype]:
        saved = {key: getattr(*key) for key in settings}
        try:
            for (module, name), value in settings.items():
                setattr(module, name, value)
            persistent.STRATEGY.w_hh_placement = {}
            forward = time_call(forward_only(runner), [inputs], warmup=1, repeats=repeats, device=device)
            both = time_call(forward_backward(runner), [inputs], warmup=1, repeats=repeats, device=device)
            check = GradCheck(measure(outputs_and_gradients(runner, inputs, case), expected, case.dtype), [])
            placement = ", ".join(f"{name.split('_')[0]}: {where}"
                                  for name, where in persistent.STRATEGY.w_hh_placement.items())
            print(f"  {label:40}: forward {forward.median_ms:8.3f} ms ({forward.median_ms * 1000 / case.seq_len:6.2f} "
                  f"us/step), fwd+bwd {both.median_ms:8.3f} ms, error {check.rel:.2e} ({check.worst}) [{placement}]",
                  flush=True)
        except Exception as error:  # report it, go on with the next, then fail
            failed += 1
            print(f"  {label:40}: FAILED {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}")
        finally:
            for (module, name), value in saved.items():
                setattr(module, name, value)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="3x37x7" if DRY else "64x512x256", help="BxHxT")
    parser.add_argument("--cells", default="LSTM" if DRY else "LSTM,GRU")
    parser.add_argument("--dtypes", default="float32" if DRY else "float32,bfloat16")
    parser.add_argument("--top", type=int, default=6, help="kernels listed per run")
    parser.add_argument("--sweep", action="store_true", help="also time persistent tile shapes (LSTM, each dtype)")
    parser.add_argument("--sweep-shapes", default="3x37x7" if DRY else "64x512x512,16x768x1024")
    parser.add_argument("--sweep-dtypes", default="float32" if DRY else "bfloat16")
    parser.add_argument("--only-sweep", action="store_true", help="the sweep alone (implies --sweep)")
    parser.add_argument("--switches", action="store_true",
                        help="also time the opt-in switches (W_hh on chip, tf32x3, two-stage K loop), LSTM")
    parser.add_argument("--switch-shapes", default="3x16x7" if DRY else "64x512x512,16x1024x512",
                        help="BxHxT list, each in bf16 and fp32")
    parser.add_argument("--only-switches", action="store_true", help="the switches alone (implies --switches)")
    args = parser.parse_args()
    device = torch.device("cpu" if DRY else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("profile_steps needs a CUDA GPU; GPU_CHECK_DRY=1 runs it on the CPU at a tiny shape.")
        return 2
    if args.only_switches:
        args.switches = True
    elif args.only_sweep:
        args.sweep = True
    else:
        profile_all(args, device)
    failed = 0
    if args.switches:
        for shape in args.switch_shapes.split(","):
            b, h, t = parse_shape(shape)
            for dtype in (torch.bfloat16, torch.float32):
                failed += time_switches(Case("sequence", "LSTM", dtype, b, h, h, t), device, 2 if DRY else 5)
    if args.sweep:
        for shape in args.sweep_shapes.split(","):
            b, h, t = parse_shape(shape)
            for dtype in map(parse_dtype, args.sweep_dtypes.split(",")):
                failed += sweep_tiles(Case("sequence", "LSTM", dtype, b, h, h, t), device, 2 if DRY else 7)
    if failed:
        print(f"\n{failed} timed run(s) FAILED (above)")
    return 1 if failed else 0


def profile_all(args, device: torch.device) -> None:
    """The barrier's cost, direct launches on and off, and one profiled forward+backward per provider."""
    barrier_cost(device)
    batch, hidden, seq_len = parse_shape(args.shape)
    providers = ([] if DRY else ["cudnn"]) + [f"fusedrnn-{s}" for s in FUSED_STRATEGIES]
    default_launch = launch.DIRECT_LAUNCH
    for direct in (False, True):  # StepLauncher's direct launches off and on (opt-in until a GPU run checks them)
        launch.DIRECT_LAUNCH = direct
        for dtype in map(parse_dtype, args.dtypes.split(",")):
            case = Case("sequence", "LSTM", dtype, batch, hidden, hidden, seq_len)
            print(f"\nFUSEDRNN_DIRECT_LAUNCH={int(direct)}:", end="")
            profile_case(case, "fusedrnn-fusedstep", device, 2)
    launch.DIRECT_LAUNCH = default_launch
    for cell in args.cells.split(","):
        for dtype in map(parse_dtype, args.dtypes.split(",")):
            case = Case("sequence", cell.strip(), dtype, batch, hidden, hidden, seq_len)
            for provider in providers:
                profile_case(case, provider, device, args.top)


if __name__ == "__main__":
    sys.exit(main())
