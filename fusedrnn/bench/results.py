"""The long-format results table: one row per provider x case x pass, and where it is written."""

import csv
import math
import platform
import subprocess
import time
from pathlib import Path

import torch

import fusedrnn
from fusedrnn.bench.grid import Case

COLUMNS = [
    "provider", "cell", "pass", "batch", "hidden", "seq_len", "input_size", "layers", "bidirectional", "dtype",
    "median_ms", "p20_ms", "p80_ms", "repeats", "peak_mem_mb", "max_abs_err", "rel_err",
    "err_vs_reference_ratio", "grad_ok", "speedup_vs_cudnn", "mem_vs_cudnn", "baseline", "note",
    "device", "threads", "torch", "triton", "fusedrnn", "git_commit", "date",
]
# Passes: a whole sequence without autograd, forward and backward; one cell step without autograd (the row
# that also carries the step's gradient check), and forward and backward.
FORWARD, FORWARD_BACKWARD, STEP = "forward", "forward+backward", "step"
STEP_FORWARD_BACKWARD = "step forward+backward"
STEP_PASSES = (STEP, STEP_FORWARD_BACKWARD)


def number(value) -> float | None:
    """A row's numeric field as a float, None where it is empty or NaN (in memory or read back from a CSV)."""
    if value is None or value == "":
        return None
    value = float(value)
    return None if math.isnan(value) else value


def new_row(provider: str, case: Case, pass_name: str, baseline: str) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(
        provider=provider, cell=case.module_name, batch=case.batch, hidden=case.hidden,
        seq_len=case.seq_len, input_size=case.input_size, layers=case.layers, bidirectional=case.bidirectional,
        dtype=case.dtype_name, baseline=baseline, note="",
    )
    row["pass"] = pass_name
    return row


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def git_commit() -> str:
    """The checkout's short commit, or "unknown" (an installed package, no git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(fusedrnn.__file__).parent,
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__


def environment(device: torch.device) -> dict:
    """The columns every row shares: what ran, where, when (the caller adds the thread count)."""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version(),
        "fusedrnn": fusedrnn.__version__,
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
    }


def output_stem(env: dict, out_dir: Path) -> Path:
    """out_dir/<device>_<date>, e.g. NVIDIA-H100-80GB-HBM3_2026-11-27_2130, not clobbering an earlier run."""
    device = "-".join(env["device"].split()).replace("/", "-")
    stamp = env["date"].replace(" ", "_").replace(":", "")
    stem = out_dir / f"{device}_{stamp}"
    suffix = 1
    while stem.with_suffix(".csv").exists():
        stem = out_dir / f"{device}_{stamp}-{suffix}"
        suffix += 1
    return stem


def _cell(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_csv(rows: list[dict], env: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _cell(env[name] if name in env else row[name]) for name in COLUMNS})
