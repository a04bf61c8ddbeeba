"""Drawing gradient flow through time: the mean ||dL/dh_t|| against distance from the end of the backward
pass, one curve per layer and direction (or per model), on a log scale. matplotlib's Agg canvas, no pyplot
state: safe in training processes and tests."""

from pathlib import Path

import torch


def figure(n_panels: int, width: float = 5.6, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]


def draw_profiles(ax, curves: dict[str, torch.Tensor], title: str, styles: dict[str, dict] | None = None) -> None:
    """Each curve: (T,) mean norms by distance (NaN where no row reaches); drawn where finite and positive,
    with matplotlib line options styles[label] when given."""
    for label, profile in curves.items():
        profile = profile.double()
        distance = torch.arange(len(profile))
        keep = torch.isfinite(profile) & (profile > 0)
        ax.plot(distance[keep].numpy(), profile[keep].numpy(), label=label, linewidth=1.4,
                **(styles or {}).get(label, {}))
    ax.set_yscale("log")
    ax.set_xlabel("distance from the loss end (backward steps)")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def save_profiles(curves: dict[str, torch.Tensor], path: Path, title: str) -> Path:
    fig, (ax,) = figure(1)
    draw_profiles(ax, curves, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
