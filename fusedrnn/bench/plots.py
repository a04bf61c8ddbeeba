"""PNG plots of a run: speedup heat maps (batch x hidden) per cell and dtype for each fused provider, and
forward+backward time against hidden size for every batch size. matplotlib's Agg canvas, no global pyplot
state.

Both mark times measured in Triton's interpreter (†: they time the interpreter, not the kernels). A heat
map cell whose p20-p80 range overlaps the baseline's is within the noise of the measurement: it is drawn in
the neutral colour and its label starts with ≈, so that two runs of the same code path do not show up as
saturated colours.
"""

from collections import Counter
from pathlib import Path
from typing import NamedTuple

from fusedrnn.bench.results import FORWARD_BACKWARD
from fusedrnn.bench.suites import INTERPRETER_NOTE

INTERPRETED = "†"
WITHIN_NOISE = "≈"
CASE_FIELDS = ("cell", "dtype", "batch", "hidden", "seq_len", "input_size", "layers", "bidirectional")
NOISE_NOTE = f"{WITHIN_NOISE} p20-p80 overlaps the baseline's: within noise, drawn neutral"
INTERPRETER_MARK_NOTE = f"{INTERPRETED} Triton's interpreter: times the interpreter, not the kernels"


def _timed_single_layer(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["pass"] == FORWARD_BACKWARD and r["median_ms"] is not None
            and r["layers"] == 1 and not r["bidirectional"]]


def _panels(rows: list[dict]) -> list[tuple[str, str]]:
    return sorted({(r["cell"], r["dtype"]) for r in rows})


def _most_common(values) -> object:
    return Counter(values).most_common(1)[0][0]


def interpreted(row: dict) -> bool:
    return INTERPRETER_NOTE in (row.get("note") or "")


def within_noise(row: dict, baseline: dict | None) -> bool:
    """Whether the row's p20-p80 range overlaps the baseline's (the difference is inside the noise)."""
    if baseline is None or baseline is row:
        return False
    ranges = [(r.get("p20_ms"), r.get("p80_ms")) for r in (row, baseline)]
    if any(v is None or v == "" for pair in ranges for v in pair):
        return False
    (low, high), (base_low, base_high) = ([float(v) for v in pair] for pair in ranges)
    return low <= base_high and base_low <= high


class HeatCell(NamedTuple):
    batch: int
    hidden: int
    speedup: float
    colour: float  # what the colour shows: the speedup, or 1 (neutral) within the noise
    label: str


def heatmap_cells(rows: list[dict], provider: str) -> dict[tuple[str, str, int], list[HeatCell]]:
    """(cell, dtype, sequence length) -> the provider's heat map cells, one panel per cell and dtype at the
    sequence length most of its cases share."""
    timed = _timed_single_layer(rows)
    baselines = {tuple(r[f] for f in CASE_FIELDS): r for r in timed if r["provider"] == r["baseline"]}
    mine = [r for r in timed if r["provider"] == provider and r["speedup_vs_cudnn"] is not None]
    panels = {}
    for cell, dtype in _panels(mine):
        here = [r for r in mine if (r["cell"], r["dtype"]) == (cell, dtype)]
        seq_len = _most_common(r["seq_len"] for r in here)
        cells = []
        for r in here:
            if r["seq_len"] != seq_len:
                continue
            speedup = float(r["speedup_vs_cudnn"])
            noise = within_noise(r, baselines.get(tuple(r[f] for f in CASE_FIELDS)))
            label = (WITHIN_NOISE if noise else "") + f"{speedup:.3g}x" + (INTERPRETED if interpreted(r) else "")
            cells.append(HeatCell(r["batch"], r["hidden"], speedup, 1.0 if noise else speedup, label))
        panels[cell, dtype, seq_len] = cells
    return panels


def _figure(n_rows: int, n_cols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2 * n_cols, 4.2 * n_rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = [[figure.add_subplot(n_rows, n_cols, r * n_cols + c + 1) for c in range(n_cols)] for r in range(n_rows)]
    return figure, axes


def speedup_heatmaps(rows: list[dict], provider: str, path: Path) -> Path | None:
    """One panel per (cell, dtype): the provider's forward+backward speedup over the baseline, B x H, at the
    sequence length most of those cases share."""
    from matplotlib.colors import LogNorm

    panels = heatmap_cells(rows, provider)
    if not panels:
        return None
    figure, (axes,) = _figure(1, len(panels))
    baseline = next(r["baseline"] for r in rows if r["provider"] == provider)
    marks = set()
    for ax, ((cell, dtype, seq_len), cells) in zip(axes, panels.items()):
        batches = sorted({c.batch for c in cells})
        hiddens = sorted({c.hidden for c in cells})
        grid = [[float("nan")] * len(hiddens) for _ in batches]
        for c in cells:
            grid[batches.index(c.batch)][hiddens.index(c.hidden)] = c.colour
            ax.text(hiddens.index(c.hidden), batches.index(c.batch), c.label, ha="center", va="center", fontsize=9)
            marks |= {m for m in (WITHIN_NOISE, INTERPRETED) if m in c.label}
        # Symmetric in log scale about 1, so 2x faster and 2x slower get opposite colours of equal strength;
        # the scale spans the differences outside the noise only.
        values = [c.colour for c in cells if c.colour != 1.0] or [1.0]
        limit = max(max(values), 1 / min(values), 1.1)
        image = ax.imshow(grid, cmap="RdYlGn", norm=LogNorm(1 / limit, limit), origin="lower", aspect="auto")
        ax.set_xticks(range(len(hiddens)), [str(h) for h in hiddens])
        ax.set_yticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("hidden size H")
        ax.set_ylabel("batch B")
        ax.set_title(f"{provider} vs {baseline}: {cell} {dtype}, T={seq_len}")
        ticks = [1 / limit, limit**-0.5, 1.0, limit**0.5, limit]
        colorbar = figure.colorbar(image, ax=ax, label="speedup (fwd+bwd)")
        colorbar.set_ticks(ticks, labels=[f"{t:.3g}x" for t in ticks])
        colorbar.minorticks_off()
    notes = [note for mark, note in ((WITHIN_NOISE, NOISE_NOTE), (INTERPRETED, INTERPRETER_MARK_NOTE)) if mark in marks]
    if notes:
        figure.supxlabel("\n".join(notes), fontsize=8)
    figure.savefig(path, dpi=110)
    return path


def time_panels(rows: list[dict]) -> list[tuple[str, str, int, int]]:
    """The (cell, dtype, batch, sequence length) of each panel of the time plot: every batch size of every
    cell and dtype, each at the sequence length most of its cases share."""
    timed = _timed_single_layer(rows)
    panels = []
    for cell, dtype in _panels(timed):
        here = [r for r in timed if (r["cell"], r["dtype"]) == (cell, dtype)]
        for batch in sorted({r["batch"] for r in here}):
            panels.append((cell, dtype, batch, _most_common(r["seq_len"] for r in here if r["batch"] == batch)))
    return panels


def time_against_hidden(rows: list[dict], path: Path) -> Path | None:
    """One row of panels per (cell, dtype), one column per batch size: each provider's forward+backward
    median against H, with p20-p80 bars (a panel says its B and T)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    timed = _timed_single_layer(rows)
    panels = time_panels(rows)
    if not panels:
        return None
    kinds = _panels(timed)
    batches = sorted({batch for _, _, batch, _ in panels})
    figure, axes = _figure(len(kinds), len(batches))
    for row_axes in axes:
        for ax in row_axes:
            ax.set_visible(False)
    any_interpreted = False
    for cell, dtype, batch, seq_len in panels:
        ax = axes[kinds.index((cell, dtype))][batches.index(batch)]
        ax.set_visible(True)
        here = sorted((r for r in timed if (r["cell"], r["dtype"], r["batch"], r["seq_len"]) == (cell, dtype, batch,
                       seq_len)), key=lambda r: r["hidden"])
        for provider in dict.fromkeys(r["provider"] for r in here):
            line = [r for r in here if r["provider"] == provider]
            medians = [r["median_ms"] for r in line]
            below = [m - r["p20_ms"] for m, r in zip(medians, line)]
            above = [r["p80_ms"] - m for m, r in zip(medians, line)]
            hiddens = [r["hidden"] for r in line]
            mark = any(interpreted(r) for r in line)
            any_interpreted |= mark
            ax.errorbar(hiddens, medians, yerr=[below, above], marker="o", capsize=3,
                        label=provider + (f" {INTERPRETED}" if mark else ""))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["hidden"] for r in here}), [str(h) for h in sorted({r["hidden"] for r in here})])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("hidden size H")
        ax.set_ylabel("forward+backward, ms (median, p20-p80)")
        ax.set_title(f"{cell} {dtype}, B={batch}, T={seq_len}")
        ax.legend(fontsize=8)
    if any_interpreted:
        figure.supxlabel(INTERPRETER_MARK_NOTE, fontsize=8)
    figure.savefig(path, dpi=110)
    return path


def make_plots(rows: list[dict], stem: Path) -> tuple[list[Path], str | None]:
    """The plots written next to the CSV, and a note when there are none (matplotlib missing)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install 'fusedrnn[bench]')"
    written = []
    fused = [p for p in dict.fromkeys(r["provider"] for r in rows) if p.startswith("fusedrnn")]
    for provider in fused:
        path = speedup_heatmaps(rows, provider, Path(f"{stem}_speedup_{provider}.png"))
        if path is not None:
            written.append(path)
    path = time_against_hidden(rows, Path(f"{stem}_time_vs_hidden.png"))
    if path is not None:
        written.append(path)
    return written, None
