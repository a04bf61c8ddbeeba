"""The speed bar read off a run's rows (fusedrnn/bench/speed_bar.py), on made-up rows and a committed GPU run."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from fusedrnn.bench import speed_bar
from fusedrnn.bench.speed_bar import AUTO, evaluate, meets

ROOT = Path(__file__).resolve().parents[1]
GPU = "Some GPU"
DATE = "2026-12-08 01:00"


def row(provider, cell, dtype, batch, hidden, seq_len=512, pass_="forward+backward", ms=1.0, speedup=None,
        memory=None, error=None, grad_ok=True):
    """A row as the CSV holds it (strings)."""
    text = lambda v: "" if v is None else str(v)  # noqa: E731
    return {"provider": provider, "cell": cell, "pass": pass_, "batch": str(batch), "hidden": str(hidden),
            "seq_len": str(seq_len), "layers": "1", "bidirectional": "False", "dtype": dtype,
            "median_ms": text(ms), "grad_ok": str(grad_ok), "speedup_vs_cudnn": text(speedup),
            "mem_vs_cudnn": text(memory), "err_vs_reference_ratio": text(error), "device": GPU, "date": DATE}


def run(speedups: dict[str, float], memory=0.9, error=0.9, published=(1.9, 5.0)) -> list[dict]:
    """cuDNN and the persistent strategy at every grid point, the persistent one `speedups[cell]` faster."""
    rows = []
    for cell, speedup in speedups.items():
        for dtype in speed_bar.DTYPES:
            for batch, hidden in speed_bar.GRID:
                rows.append(row("cudnn", cell, dtype, batch, hidden, ms=3.0, speedup=1.0, memory=1.0, error=1.0))
                rows.append(row("fusedrnn-persistent", cell, dtype, batch, hidden, ms=3.0 / speedup, speedup=speedup,
                                memory=memory, error=error))
    for pass_, ms in zip(("forward", "forward+backward"), published):
        rows.append(row("fusedrnn-persistent", "LSTM", "bfloat16", 16, 768, seq_len=1024, pass_=pass_, ms=ms))
    return rows


def find(rows, provider, cell, dtype, batch, hidden):
    return next(r for r in rows if (r["provider"], r["cell"], r["dtype"], r["batch"], r["hidden"], r["pass"])
                == (provider, cell, dtype, str(batch), str(hidden), "forward+backward"))


def test_the_bar_is_met_only_when_every_part_is():
    rows = run({"LSTM": 1.3, "GRU": 1.6})
    result = evaluate(rows, "fusedrnn-persistent")
    assert result["cells"]["LSTM"]["geomean"] == pytest.approx(1.3)
    assert result["cells"]["GRU"]["measured"] == 18 and result["points"] == 36
    assert meets(result)

    slow = find(rows, "fusedrnn-persistent", "LSTM", "float32", 256, 1024)
    slow["speedup_vs_cudnn"] = "0.5"
    result = evaluate(rows, "fusedrnn-persistent")
    assert result["cells"]["LSTM"]["geomean"] == pytest.approx((1.3**17 * 0.5) ** (1 / 18))
    assert result["cells"]["LSTM"]["lowest"] == ("float32 B=256 H=1024", 0.5)
    assert not meets(result)  # one point below 0.8x, and the geometric mean under 1.25x


@pytest.mark.parametrize("spoil", ["grad check failed", "not timed", "memory", "error", "published", "GRU mean"])
def test_each_part_of_the_bar_can_fail_it(spoil):
    rows = run({"LSTM": 1.3, "GRU": 1.6})
    point = find(rows, "fusedrnn-persistent", "GRU", "bfloat16", 64, 512)
    if spoil == "grad check failed":
        point["grad_ok"] = "False"
    elif spoil == "not timed":
        point["median_ms"] = ""
    elif spoil == "memory":
        point["mem_vs_cudnn"] = "1.01"
    elif spoil == "error":
        point["err_vs_reference_ratio"] = "1.2"
    elif spoil == "published":
        rows = run({"LSTM": 1.3, "GRU": 1.6}, published=(2.1, 5.0))
    else:
        rows = run({"LSTM": 1.3, "GRU": 1.45})
    result = evaluate(rows, "fusedrnn-persistent")
    assert not meets(result)
    if spoil in ("grad check failed", "not timed"):
        assert result["cells"]["GRU"]["missing"] == ["bfloat16 B=64 H=512"]


def test_auto_is_timed_as_what_the_committed_table_picks():
    # fp32 picks torch's (cuDNN: 1x), bf16 the persistent strategy (1.5x): the mean over 18 points is sqrt(1.5).
    table = tuple(dict(gpu=GPU, kind="sequence", cell="LSTM", dtype=dtype, batch=16, hidden=256, backend=backend,
                       date="2026-12-01 00:00", source="benchmarks/results/older.csv")
                  for dtype, backend in (("float32", "torch"), ("bfloat16", "triton-persistent")))
    rows = run({"LSTM": 1.5})
    result = evaluate(rows, AUTO, table, GPU)
    assert result["cells"]["LSTM"]["measured"] == 18
    assert result["cells"]["LSTM"]["geomean"] == pytest.approx(math.sqrt(1.5))
    assert result["cells"]["LSTM"]["lowest"][1] == 1.0
    lines = "\n".join(speed_bar.markdown(rows, GPU, table=table))
    assert f"| {AUTO} | LSTM | 18/18 | 1.22x" in lines


def test_auto_is_left_out_when_the_table_comes_from_the_same_run():
    table = (dict(gpu=GPU, kind="sequence", cell="LSTM", dtype="float32", batch=16, hidden=256, backend="torch",
                  date=DATE, source="benchmarks/results/this.csv"),)
    lines = "\n".join(speed_bar.markdown(run({"LSTM": 1.5}), GPU, table=table))
    assert "left out: the table was built from this run" in lines and f"| {AUTO} |" not in lines
    assert speed_bar.markdown([r for r in run({"LSTM": 1.5}) if r["provider"] != "cudnn"], GPU, table=table) == []


def test_the_committed_h200_run_reads_as_the_notes_say():
    """benchmarks/NOTES.md (2026-12-04): LSTM 1.06x over 18 points, GRU 1.20x over 7; the bar not met."""
    csv_path = ROOT / "benchmarks/results/NVIDIA-H200_2026-12-04_1631_persistent-vs-cudnn.csv"
    done = subprocess.run([sys.executable, "-m", "fusedrnn.bench.speed_bar", str(csv_path)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert "| fusedrnn-persistent | LSTM | 18/18 | 1.06x (bar 1.25x) | 0.29x at float32 B=256 H=1024" in done.stdout
    assert "| fusedrnn-persistent | GRU | 7/18 | 1.20x (bar 1.5x)" in done.stdout
    assert "misses |" in done.stdout and "left out" in done.stdout


def test_the_bar_grid_holds_exactly_the_bars_points():
    from fusedrnn.bench.grid import PUBLISHED, named_grid

    cases = named_grid("bar").cases
    got = {(c.cell, c.dtype_name, c.batch, c.hidden, c.seq_len) for c in cases}
    want = {(cell, dtype, b, h, speed_bar.SEQ_LEN) for cell in speed_bar.MIN_GEOMEAN for dtype in speed_bar.DTYPES
            for b, h in speed_bar.GRID}
    want.add(("LSTM", "bfloat16", PUBLISHED["batch"], PUBLISHED["hidden"], PUBLISHED["seq_len"]))
    assert got == want and len(cases) == len(want)
    assert all(c.layers == 1 and not c.bidirectional and "fusedrnn-persistent" not in c.exclude for c in cases)
