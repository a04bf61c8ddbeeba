"""Is fusedrnn faster than cuDNN? The speed bar of the persistent strategy's issue, read off one run's rows.

Over the single-layer T=512 points of the default grid (B in {16, 64, 256} x H in {256, 512, 1024}, fp32
and bf16; 18 per cell) that the run measured, forward+backward against cuDNN:
- per cell, the geometric mean of the speedups (LSTM >= 1.25x, GRU >= 1.5x) and the lowest one (>= 0.8x);
- FlashRNN's point (LSTM bf16 B=16 T=1024 H=768): <= 2.0 ms forward, <= 5.2 ms forward+backward;
- peak memory <= cuDNN's and gradient error <= cuDNN's own error against float64, at every point.
A point that failed its gradient check or was not timed counts as missing, never as a pass.

Read for each fused strategy the run timed, and for `auto` as users get it: at each point the implementation
that the committed dispatch table picks, timed in this run as that provider (cuDNN where it picks torch's).
A table built from the run being read would have chosen with hindsight, so auto is then left out.

    python -m fusedrnn.bench.speed_bar benchmarks/results/<run>.csv   # the bar of a committed run
"""

import csv
import math
import sys
from pathlib import Path

import torch

from fusedrnn.bench.grid import PUBLISHED
from fusedrnn.bench.results import number
from fusedrnn.strategies import LABELS, dispatch

MIN_GEOMEAN = {"LSTM": 1.25, "GRU": 1.5}
MIN_POINT = 0.8
FORWARD_MS, FORWARD_BACKWARD_MS = 2.0, 5.2
GRID = [(b, h) for b in (16, 64, 256) for h in (256, 512, 1024)]
DTYPES = ("float32", "bfloat16")
SEQ_LEN = 512
AUTO = "fusedrnn-auto"
PROVIDER_OF = {name: f"fusedrnn-{label}" for name, label in LABELS.items()} | {"torch": "cudnn"}


def _single_layer(row: dict) -> bool:
    return str(row["layers"]) == "1" and str(row["bidirectional"]) == "False"


def _index(rows: list[dict]) -> dict[tuple, dict]:
    """(provider, pass, cell, dtype, batch, hidden, seq_len) -> row, single-layer rows only."""
    return {(r["provider"], r["pass"], r["cell"], str(r["dtype"]), int(r["batch"]), int(r["hidden"]),
             int(r["seq_len"])): r for r in rows if _single_layer(r)}


def _timed(row: dict | None) -> bool:
    return row is not None and str(row["grad_ok"]) == "True" and number(row["median_ms"]) is not None


def _auto_provider(table, gpu: str, cell: str, dtype: str, batch: int, hidden: int) -> str:
    return PROVIDER_OF[dispatch.choose(table, gpu, "sequence", cell, getattr(torch, dtype), batch, hidden)]


def _row(index, provider: str, pass_: str, point: tuple, table, gpu: str) -> dict | None:
    cell, dtype, batch, hidden, seq_len = point
    if provider == AUTO:
        provider = _auto_provider(table, gpu, cell, dtype, batch, hidden)
    return index.get((provider, pass_, cell, dtype, batch, hidden, seq_len))


def _ratio(row: dict, field: str) -> float | None:
    """A row's ratio to cuDNN; cuDNN's own row (auto picking torch's) is 1 by definition."""
    return 1.0 if row["provider"] == "cudnn" else number(row[field])


def _label(point: tuple) -> str:
    cell, dtype, batch, hidden, seq_len = point
    return f"{dtype} B={batch} H={hidden}" + (f" T={seq_len}" if seq_len != SEQ_LEN else "")


def evaluate(rows: list[dict], provider: str, table=(), gpu: str = "") -> dict:
    """The bar's figures for one provider: per cell (geomean, lowest, points measured, missing), FlashRNN's
    point (forward, forward+backward ms), and the points over cuDNN's memory or gradient error as (ratio, label)."""
    index = _index(rows)
    result = {"cells": {}, "points": 0, "memory_over": [], "error_over": [], "memory_missing": 0}
    for cell in MIN_GEOMEAN:
        speedups, missing = {}, []
        for dtype in DTYPES:
            for batch, hidden in GRID:
                point = (cell, dtype, batch, hidden, SEQ_LEN)
                row = _row(index, provider, "forward+backward", point, table, gpu)
                speedup = _ratio(row, "speedup_vs_cudnn") if _timed(row) else None
                if speedup is None:
                    missing.append(_label(point))
                    continue
                speedups[_label(point)] = speedup
                memory, error = _ratio(row, "mem_vs_cudnn"), _ratio(row, "err_vs_reference_ratio")
                if memory is None:
                    result["memory_missing"] += 1
                elif memory > 1.0:
                    result["memory_over"].append((memory, f"{cell} {_label(point)}"))
                if error is not None and error > 1.0:
                    result["error_over"].append((error, f"{cell} {_label(point)}"))
        result["points"] += len(speedups)
        geomean = math.exp(sum(map(math.log, speedups.values())) / len(speedups)) if speedups else None
        lowest = min(speedups.items(), key=lambda item: item[1]) if speedups else None
        result["cells"][cell] = dict(geomean=geomean, lowest=lowest, measured=len(speedups), missing=missing)
    published = (PUBLISHED["cell"], str(PUBLISHED["dtype"]).removeprefix("torch."), PUBLISHED["batch"],
                 PUBLISHED["hidden"], PUBLISHED["seq_len"])
    result["published"] = {}
    for pass_ in ("forward", "forward+backward"):
        row = _row(index, provider, pass_, published, table, gpu)
        result["published"][pass_] = number(row["median_ms"]) if _timed(row) else None
    return result


def meets(result: dict) -> bool:
    """Every part of the bar, over the whole grid (a point not measured is not a pass)."""
    cells_ok = all(
        c["geomean"] is not None and not c["missing"] and c["geomean"] >= MIN_GEOMEAN[cell]
        and c["lowest"][1] >= MIN_POINT for cell, c in result["cells"].items())
    forward, both = result["published"]["forward"], result["published"]["forward+backward"]
    published_ok = forward is not None and both is not None and forward <= FORWARD_MS and both <= FORWARD_BACKWARD_MS
    return (cells_ok and published_ok and not result["memory_over"] and not result["error_over"]
            and not result["memory_missing"])


def _providers(rows: list[dict]) -> list[str]:
    ran = {r["provider"] for r in rows}
    return [p for p in PROVIDER_OF.values() if p in ran and p != "cudnn"]


def _table_from_this_run(table, rows: list[dict], source: str | None) -> bool:
    dates = {str(r.get("date", "")) for r in rows}
    gpu = {str(r.get("device", "")) for r in rows}
    return any(e["gpu"] in gpu and (e["date"] in dates or (source and Path(e["source"]).name == source))
               for e in table)


def _ms(value: float | None, bar: float) -> str:
    return "not measured" if value is None else f"{value:.3g} ms ({'meets' if value <= bar else 'misses'} <= {bar})"


def _over(points: list[tuple[float, str]], total: int) -> str:
    if not points:
        return f"none of {total}"
    ratio, label = max(points)
    return f"{len(points)} of {total} (worst {ratio:.2f}x, {label})"


def _cell_line(provider: str, cell: str, c: dict) -> list[str]:
    total = c["measured"] + len(c["missing"])
    if c["geomean"] is None:
        return [provider, cell, f"0/{total}", "—", "—", "no"]
    ok = not c["missing"] and c["geomean"] >= MIN_GEOMEAN[cell] and c["lowest"][1] >= MIN_POINT
    return [provider, cell, f"{c['measured']}/{total}", f"{c['geomean']:.2f}x (bar {MIN_GEOMEAN[cell]}x)",
            f"{c['lowest'][1]:.2f}x at {c['lowest'][0]} (bar {MIN_POINT}x)", "yes" if ok else "no"]


def markdown(rows: list[dict], gpu: str, source: str | None = None, table=None) -> list[str]:
    """The section for a run's summary; empty without cuDNN rows (a CPU run)."""
    if not any(r["provider"] == "cudnn" for r in rows):
        return []
    table = dispatch.entries() if table is None else table
    providers = _providers(rows)
    hindsight = _table_from_this_run(table, rows, source)
    if not hindsight:
        providers.append(AUTO)
    lines = ["## Faster than cuDNN? (the persistent strategy's bar)", "",
             f"Forward+backward over the default grid's single-layer T={SEQ_LEN} points (B x H, fp32 and bf16) that "
             "this run timed with a passing gradient check; a point not timed is missing, never a pass. "
             f"{AUTO}: at each point what the committed dispatch table picks, timed in this run as that provider"
             + (" (left out: the table was built from this run)." if hindsight else "."), "",
             "| provider | cell | points | geometric mean | lowest | meets |", "|---|---|---|---|---|---|"]
    results = {p: evaluate(rows, p, table, gpu) for p in providers}
    for provider, result in results.items():
        for cell, c in result["cells"].items():
            lines.append("| " + " | ".join(_cell_line(provider, cell, c)) + " |")
    lines += ["", "| provider | FlashRNN's point forward | forward+backward | memory > cuDNN's | "
              "gradient error > cuDNN's | whole bar |", "|---|---|---|---|---|---|"]
    for provider, result in results.items():
        published = result["published"]
        memory = _over(result["memory_over"], result["points"])
        if result["memory_missing"]:
            memory += f" ({result['memory_missing']} unmeasured)"
        lines.append(f"| {provider} | {_ms(published['forward'], FORWARD_MS)} | "
                     f"{_ms(published['forward+backward'], FORWARD_BACKWARD_MS)} | {memory} | "
                     f"{_over(result['error_over'], result['points'])} | {'meets' if meets(result) else 'misses'} |")
    return lines + [""]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].endswith(".csv"):
        print(__doc__)
        return 2
    path = Path(argv[0])
    rows = list(csv.DictReader(open(path)))
    lines = markdown(rows, rows[0]["device"] if rows else "", path.name)
    print("\n".join(lines) if lines else f"{path}: no cuDNN rows (not a GPU run)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
