"""PNG plots of a run: speedup heat maps (batch x hidden) per cell and dtype for each fused provider, and
forward+backward time against hidden size. matplotlib's Agg canvas, no global pyplot state."""

from collections import Counter
from pathlib import Path

from fusedrnn.bench.results import FORWARD_BACKWARD


def _timed_single_layer(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["pass"] == FORWARD_BACKWARD and r["median_ms"] is not None
            and r["layers"] == 1 and not r["bidirectional"]]


def _panels(rows: list[dict]) -> list[tuple[str, str]]:
    return sorted({(r["cell"], r["dtype"]) for r in rows})


def _most_common(values) -> object:
    return Counter(values).most_common(1)[0][0]


def _figure(n_panels: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2 * n_panels, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, n_panels, k + 1) for k in range(n_panels)]


def speedup_heatmaps(rows: list[dict], provider: str, path: Path) -> Path | None:
    """One panel per (cell, dtype): the provider's forward+backward speedup over the baseline, B x H, at the
    sequence length most of those cases share."""
    from matplotlib.colors import LogNorm

    mine = [r for r in _timed_single_layer(rows) if r["provider"] == provider and r["speedup_vs_cudnn"] is not None]
    panels = _panels(mine)
    if not panels:
        return None
    figure, axes = _figure(len(panels))
    for ax, (cell, dtype) in zip(axes, panels):
        here = [r for r in mine if (r["cell"], r["dtype"]) == (cell, dtype)]
        seq_len = _most_common(r["seq_len"] for r in here)
        here = [r for r in here if r["seq_len"] == seq_len]
        batches = sorted({r["batch"] for r in here})
        hiddens = sorted({r["hidden"] for r in here})
        grid = [[float("nan")] * len(hiddens) for _ in batches]
        for r in here:
            grid[batches.index(r["batch"])][hiddens.index(r["hidden"])] = r["speedup_vs_cudnn"]
        values = [v for line in grid for v in line if v == v]
        # Symmetric in log scale about 1, so 2x faster and 2x slower get opposite colours of equal strength.
        limit = max(max(values), 1 / min(values), 1.1)
        image = ax.imshow(grid, cmap="RdYlGn", norm=LogNorm(1 / limit, limit), origin="lower", aspect="auto")
        for i, line in enumerate(grid):
            for j, value in enumerate(line):
                if value == value:
                    ax.text(j, i, f"{value:.3g}x", ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(hiddens)), [str(h) for h in hiddens])
        ax.set_yticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("hidden size H")
        ax.set_ylabel("batch B")
        ax.set_title(f"{provider} vs {here[0]['baseline']}: {cell} {dtype}, T={seq_len}")
        ticks = [1 / limit, limit**-0.5, 1.0, limit**0.5, limit]
        colorbar = figure.colorbar(image, ax=ax, label="speedup (fwd+bwd)")
        colorbar.set_ticks(ticks, labels=[f"{t:.3g}x" for t in ticks])
        colorbar.minorticks_off()
    figure.savefig(path, dpi=110)
    return path


def time_against_hidden(rows: list[dict], path: Path) -> Path | None:
    """One panel per (cell, dtype): each provider's forward+backward median against H, with p20-p80 bars,
    at the (batch, sequence length) most of those cases share."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    timed = _timed_single_layer(rows)
    panels = _panels(timed)
    if not panels:
        return None
    figure, axes = _figure(len(panels))
    for ax, (cell, dtype) in zip(axes, panels):
        here = [r for r in timed if (r["cell"], r["dtype"]) == (cell, dtype)]
        batch, seq_len = _most_common((r["batch"], r["seq_len"]) for r in here)
        here = sorted((r for r in here if (r["batch"], r["seq_len"]) == (batch, seq_len)), key=lambda r: r["hidden"])
        for provider in dict.fromkeys(r["provider"] for r in here):
            line = [r for r in here if r["provider"] == provider]
            medians = [r["median_ms"] for r in line]
            below = [m - r["p20_ms"] for m, r in zip(medians, line)]
            above = [r["p80_ms"] - m for m, r in zip(medians, line)]
            hiddens = [r["hidden"] for r in line]
            ax.errorbar(hiddens, medians, yerr=[below, above], marker="o", capsize=3, label=provider)
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
