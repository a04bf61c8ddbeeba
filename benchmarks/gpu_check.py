"""`make gpu-check`: one prepared run on a GPU machine that checks and times the kernels.

It uses the machine's own python3 from the source tree (PYTHONPATH=.) and installs nothing. In order of
what we know least, so that a run cut short by its time limit still brings back the most important part:
  1. versions and the GPU;
  2. the persistent strategy's own GPU tests (barrier, repeatability, program counts, co-residency,
     fallback, CUDA-graph capture; the two-stage K loop too) and its W_hh-on-chip tests against float64 and cuDNN
     (tests/test_gpu.py::test_w_on_chip_against_cudnn), every grid barrier bounded (FUSEDRNN_SPIN_LIMIT) so
     none can hang;
  3. the opt-in switches against the default, timed with their gradient error beside cuDNN's
     (benchmarks/profile_steps.py --only-switches: W_hh on chip, the two-stage K loop, tf32x3; LSTM bf16 and
     fp32 at B=64 H=512 and B=16 H=1024, T=512);
  4. the benchmark suite's gpu-check grid (speed, memory, gradient error vs cuDNN);
  5. what is alive at the peak of one forward+backward, fused and cuDNN (benchmarks/memory_profile.py);
  6. the GPU tests of every strategy (`pytest -m gpu tests/test_gpu.py`, but those of step 2) against float64
     and cuDNN;
  7. what the regularisers cost (benchmarks/regularizers.py: weight_drop, recurrent_dropout vs the plain fused
     layer, cuDNN, and the loop a user would write);
  8. the barrier's cost and a profile of one forward+backward per strategy (benchmarks/profile_steps.py), for
     the notes. The sweep of the persistent strategy's tiles compiles a kernel pair per tile, minutes in all:
     it is a call of its own (`profile_steps.py --only-sweep`) when the tiles are in question.
Everything printed is also written to benchmarks/results/<GPU>_<date>_gpu-check.log beside the suite's
CSV, markdown and plots, and copied to $OUT (the device tool's return folder) after every step. Once the
CSV is committed, `python benchmarks/dispatch_table.py benchmarks/results/*.csv` rewrites the table that
`backend="auto"` reads (a CPU test checks that the committed table is exactly that).

GPU_CHECK_DRY=1 runs the same path on the CPU with tiny sizes in Triton's interpreter, writing under
benchmarks/results/dry-run/ (ignored by git), so no GPU minute is spent on a typo.
"""

import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRY = os.environ.get("GPU_CHECK_DRY") == "1"
# Sized to end within 10 minutes in all (the device tool's lease is 15 minutes, starts included).
PERSISTENT_TIMEOUT_S = 80
SWITCHES_TIMEOUT_S = 70
BENCH_TIMEOUT_S = 220
TEST_TIMEOUT_S = 150
PROFILE_TIMEOUT_S = 25
REGULARIZERS_TIMEOUT_S = 35
MEMORY_TIMEOUT_S = 20
ON_CHIP_TESTS = "tests/test_gpu.py::test_w_on_chip_against_cudnn"
SPIN_LIMIT = str(1 << 24)  # polls per barrier wait before it gives up (~seconds): a hang becomes an error


def without_machine_paths(text: str) -> str:
    """Logs are committed: paths inside the repository become relative, the interpreter's prefix a tag."""
    return text.replace(str(ROOT) + os.sep, "").replace(sys.prefix, "<python>")


def main() -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1",
               FUSEDRNN_SPIN_LIMIT=SPIN_LIMIT)
    if DRY:
        env["TRITON_INTERPRET"] = "1"
    import torch

    if not torch.cuda.is_available() and not DRY:
        print("gpu-check needs a CUDA GPU; GPU_CHECK_DRY=1 runs it on the CPU at tiny sizes.")
        return 2
    started = time.time()
    device = "cpu-dry-run" if DRY else torch.cuda.get_device_name()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M")
    out_dir = ROOT / "benchmarks" / "results" / ("dry-run" if DRY else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"{re.sub(r'[^A-Za-z0-9.]+', '-', device)}_{stamp}_gpu-check.log"
    log = open(log_path, "w")

    def say(text: str = "") -> None:
        print(text, flush=True)
        log.write(text + "\n")
        log.flush()

    def bring_back() -> None:
        if os.environ.get("OUT"):  # the device tool brings back what is there (at most 8 files)
            for path in sorted(out_dir.iterdir()):
                if path.is_file() and path.stat().st_mtime >= started:
                    shutil.copy(path, os.environ["OUT"])

    def step(title: str, command: list[str], timeout: int, bounded_barriers: bool = True) -> bool:
        say(without_machine_paths(f"\n## {title}\n$ {' '.join(command)}"))
        start = time.time()
        step_env = env if bounded_barriers else {k: v for k, v in env.items() if k != "FUSEDRNN_SPIN_LIMIT"}
        try:
            run = subprocess.run(command, cwd=ROOT, env=step_env, capture_output=True, text=True, timeout=timeout)
            output, ok = run.stderr + run.stdout, run.returncode == 0  # the summary (stdout) last
        except subprocess.TimeoutExpired as e:  # what it printed so far comes back as bytes
            printed = [t.decode(errors="replace") if isinstance(t, bytes) else t or "" for t in (e.stderr, e.stdout)]
            output, ok = f"{''.join(printed)}\nTIMED OUT after {timeout} s", False
        say(without_machine_paths(output).rstrip())
        say(f"-> {'ok' if ok else 'FAILED'} in {time.time() - start:.0f} s")
        bring_back()
        return ok

    say(f"# fusedrnn gpu-check {stamp}{' (DRY RUN on CPU, Triton interpreter)' if DRY else ''}")
    say(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}")
    for package in ("triton", "lightning", "torchmetrics", "jsonargparse", "wandb"):  # what gpu-quality needs too
        try:
            say(f"{package} {__import__(package).__version__}")
        except ImportError:
            say(f"{package}: not installed")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    say(f"commit {commit.stdout.strip() or 'unknown'}")
    if not DRY:
        props = torch.cuda.get_device_properties(0)
        say(f"GPU {device}: {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB")

    pytest = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
    persistent_ok = step("Persistent strategy: GPU tests", [*pytest, "tests/test_persistent.py", ON_CHIP_TESTS],
                         PERSISTENT_TIMEOUT_S)
    # Informational: what each opt-in switch (W_hh on chip, tf32x3, the two-stage K loop) gains or costs.
    step("Opt-in switches: timing", [sys.executable, "benchmarks/profile_steps.py", "--only-switches"],
         SWITCHES_TIMEOUT_S, bounded_barriers=not persistent_ok)
    bench_args = ["--dry-run"] if DRY else ["--grid", "gpu-check"]
    # Timed as users run it (unbounded barrier waits, no check after each launch) once the barrier has
    # passed its tests; bounded otherwise, so that a broken barrier cannot hang the run.
    bench_ok = step(
        "Benchmarks",
        [sys.executable, "-m", "fusedrnn.bench", *bench_args, "--out", str(out_dir.relative_to(ROOT))],
        BENCH_TIMEOUT_S, bounded_barriers=not persistent_ok,
    )
    # Informational: what is alive at the peak of one forward+backward, fused and cuDNN (the memory bar).
    step("Memory at the peak", [sys.executable, "benchmarks/memory_profile.py"], MEMORY_TIMEOUT_S,
         bounded_barriers=not persistent_ok)
    tests_ok = step("GPU tests, every strategy", [*pytest, "tests/test_gpu.py", "-k", "not test_w_on_chip"],
                    TEST_TIMEOUT_S)
    # Informational: the regularisers' overhead; barrier cost, where one forward+backward spends its time, tiles.
    step("Regularisers' overhead", [sys.executable, "benchmarks/regularizers.py"], REGULARIZERS_TIMEOUT_S,
         bounded_barriers=not persistent_ok)
    profile_ok = step("Profile", [sys.executable, "benchmarks/profile_steps.py"], PROFILE_TIMEOUT_S,
                      bounded_barriers=not persistent_ok)
    verdict = {True: "passed", False: "FAILED"}
    say(f"\ngpu-check: persistent tests {verdict[persistent_ok]}, tests {verdict[tests_ok]}, "
        f"benchmarks {'ran' if bench_ok else 'FAILED'}, profile {'ran' if profile_ok else 'FAILED'}, "
        f"{time.time() - started:.0f} s")
    if tests_ok and not DRY:  # the regularisers' GPU tests among them (every strategy against float64)
        say("Every GPU test passed, the regularisers' too: once this run is committed, auto may run their kernels "
            "(fusedrnn/strategies/dispatch.py: REGULARISED_KERNELS_CHECKED_ON_GPU = True).")
    log.close()
    bring_back()
    return 0 if persistent_ok and tests_ok and bench_ok else 1


if __name__ == "__main__":
    sys.exit(main())
