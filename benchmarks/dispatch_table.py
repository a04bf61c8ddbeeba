"""Write `fusedrnn/strategies/dispatch.json`, the table `backend="auto"` reads, from benchmark CSVs.

    python benchmarks/dispatch_table.py benchmarks/results/*.csv [--out fusedrnn/strategies/dispatch.json]

For every GPU model, kind (sequence or single step), cell, dtype and (batch, hidden) point measured
forward+backward (forward alone for single steps, which the cell suite times that way) it keeps the
fastest provider whose gradient check passed in the same run: torch's own ("cudnn" or "torch" in the
CSV, recorded as backend "torch") or a fused strategy (recorded as its backend value). Where several
CSVs measured the same point, the newest run wins. Run by `make gpu-check` after its benchmarks; the
table is committed with the CSVs it came from.
"""

import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fusedrnn.strategies import LABELS  # noqa: E402
from fusedrnn.strategies.dispatch import TABLE  # noqa: E402

BACKEND_OF = {f"fusedrnn-{label}": name for name, label in LABELS.items()} | {"cudnn": "torch", "torch": "torch"}


def points(rows: list[dict]) -> dict[tuple, list[dict]]:
    """The rows that decide each point: forward+backward for sequences, the forward of single steps."""
    by_point: dict[tuple, list[dict]] = {}
    for row in rows:
        kind = "sequence" if row["pass"] in ("forward", "forward+backward") else "step"
        wanted = "forward+backward" if kind == "sequence" else "step"
        if row["pass"] != wanted or row["layers"] != "1" or row["bidirectional"] != "False":
            continue
        if row["provider"] not in BACKEND_OF or not row["median_ms"] or row["grad_ok"] != "True":
            continue
        cell = row["cell"].removesuffix("Cell")  # the cell suite names the module (LSTMCell), the table the mode
        key = (row["device"], kind, cell, row["dtype"], int(row["batch"]), int(row["hidden"]))
        by_point.setdefault(key, []).append(row)
    return by_point


def build(paths: list[Path]) -> list[dict]:
    table: dict[tuple, dict] = {}
    runs = [(list(csv.DictReader(open(path))), path) for path in paths]
    runs = [(rows, path) for rows, path in runs if rows and "provider" in rows[0]]  # benchmark CSVs only
    for rows, path in sorted(runs, key=lambda run: run[0][0]["date"]):  # newest run last
        for key, candidates in points(rows).items():
            best = min(candidates, key=lambda row: float(row["median_ms"]))
            gpu, kind, cell, dtype, batch, hidden = key
            table[key] = dict(
                gpu=gpu, kind=kind, cell=cell, dtype=dtype, batch=batch, hidden=hidden,
                backend=BACKEND_OF[best["provider"]], median_ms=float(best["median_ms"]),
                against={row["provider"]: float(row["median_ms"]) for row in candidates},
                source=str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name, date=best["date"],
            )
    return [table[key] for key in sorted(table)]


def main(argv: list[str]) -> int:
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else TABLE
    paths = [Path(p).resolve() for p in argv if p.endswith(".csv") and "dry-run" not in p]
    if not paths:
        print(__doc__)
        return 2
    entries = build(paths)
    about = "written by benchmarks/dispatch_table.py; read by fusedrnn.strategies.dispatch"
    out.write_text(json.dumps({"about": about, "entries": entries}, indent=1) + "\n")
    print(f"{out}: {len(entries)} points from {len(paths)} CSV files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
