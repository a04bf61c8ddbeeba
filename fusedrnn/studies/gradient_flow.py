"""Study: gradient flow through time in an Elman RNN (tanh), an LSTM and a GRU on the adding problem.

    fusedrnn study gradient-flow [--preset cpu|gpu] [--lengths 10,20,40] [--steps N] [--out DIR]
    python -m fusedrnn.studies.gradient_flow ...

The adding problem (Hochreiter & Schmidhuber's): each step reads (value in [0, 1), marker); exactly two steps
are marked, one in each half of the sequence, and after the last step the network must output the sum of the
two marked values. The information to carry is a few numbers; what makes it hard is the distance between the
first marker and the loss, which grows with the sequence length. Predicting the mean (1.0) gives a mean
squared error of 1/6; a prediction counts as correct within 0.04 of the target.

For each cell and sequence length the study trains the same way (hidden size, steps, batch, Adam, learning
rate, global gradient-norm clipping at 1: the same budget for every cell) and reports test accuracy and MSE.
Then, for each cell at the longest length, it records ||dL/dh_t|| at every step in the fused backward kernels
(fusedrnn.record_gradient_flow) for one batch, at initialisation and after training, and plots the mean norm
against distance from the loss (T-1-t), relative to the norm at distance 0.

Training runs torch's implementation (backend "auto": cuDNN on a GPU, torch's CPU kernels on the CPU); the
recorded batch runs the fused kernels (on the CPU in Triton's interpreter, which this command enables when
there is no GPU). Writes `gradient_flow.csv` and `gradient_flow.png` to --out.
"""

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PRESETS = {  # sizes that finish in a few minutes on a 2-core CPU, and the textbook sizes for a GPU
    "cpu": dict(lengths="10,25,50,100", hidden=32, steps=800, batch=64),
    "gpu": dict(lengths="50,100,200,400,800", hidden=128, steps=4000, batch=128),
}
CELLS = ("RNN_TANH", "LSTM", "GRU")
LABELS = {"RNN_TANH": "RNN (tanh)", "LSTM": "LSTM", "GRU": "GRU"}
TOLERANCE = 0.04  # a prediction within this of the target is correct


def adding_batch(batch: int, length: int, generator, device):
    """(T, B, 2) inputs and (B,) targets of the adding problem."""
    import torch

    values = torch.rand(length, batch, generator=generator)
    half = max(length // 2, 1)
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, length, (batch,), generator=generator) if length > 1 else first
    markers = torch.zeros(length, batch)
    rows = torch.arange(batch)
    markers[first, rows] = 1.0
    markers[second, rows] = 1.0
    target = (values * markers).sum(0)
    return torch.stack([values, markers], dim=2).to(device), target.to(device)


def make_model(mode: str, hidden: int, device):
    import torch

    import fusedrnn

    layer = {"RNN_TANH": fusedrnn.RNN, "LSTM": fusedrnn.LSTM, "GRU": fusedrnn.GRU}[mode](2, hidden)
    return torch.nn.ModuleDict(dict(rnn=layer, head=torch.nn.Linear(hidden, 1))).to(device)


def predict(model, x):
    y, _ = model["rnn"](x)
    return model["head"](y[-1]).squeeze(1)


@dataclass
class Result:
    cell: str
    length: int
    accuracy: float
    mse: float
    seconds: float


def train(mode: str, length: int, args, device) -> tuple[Result, object]:
    import torch

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = make_model(mode, args.hidden, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    for _ in range(args.steps):
        x, target = adding_batch(args.batch, length, generator, device)
        loss = torch.nn.functional.mse_loss(predict(model, x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    seconds = time.perf_counter() - start
    x, target = adding_batch(1000, length, torch.Generator().manual_seed(args.seed + 1), device)
    with torch.no_grad():
        prediction = predict(model, x)
    accuracy = float(((prediction - target).abs() < TOLERANCE).float().mean())
    return Result(mode, length, accuracy, float(((prediction - target) ** 2).mean()), seconds), model


def gradient_profile(model, length: int, args, device):
    """Mean ||dL/dh_t|| by distance from the loss over one batch, recorded in the fused backward, relative to
    its value at distance 0."""
    import torch

    import fusedrnn

    x, target = adding_batch(args.batch, length, torch.Generator().manual_seed(args.seed + 2), device)
    with fusedrnn.record_gradient_flow(model) as flow:
        torch.nn.functional.mse_loss(predict(model, x), target).backward()
    model.zero_grad(set_to_none=True)
    profile = flow.get("rnn").profile()
    return profile / profile[0]


def plot(results: list[Result], profiles: dict, longest: int, path: Path) -> None:
    from fusedrnn.gradient_flow_plot import draw_profiles, figure

    fig, (left, right) = figure(2)
    colours = {mode: f"C{i}" for i, mode in enumerate(CELLS)}
    for mode in CELLS:
        rows = sorted((r for r in results if r.cell == mode), key=lambda r: r.length)
        if rows:
            left.plot([r.length for r in rows], [r.accuracy for r in rows], marker="o", label=LABELS[mode],
                      color=colours[mode])
    left.set_xscale("log")
    lengths = sorted({r.length for r in results})
    left.set_xticks(lengths, [str(n) for n in lengths])
    left.minorticks_off()
    left.set_xlabel("sequence length T")
    left.set_ylabel(f"test accuracy (|error| < {TOLERANCE})")
    left.set_ylim(-0.02, 1.02)
    left.set_title("adding problem, same training budget", fontsize=10)
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    curves = {f"{LABELS[mode]}, {when}": curve for (mode, when), curve in profiles.items()}
    styles = {f"{LABELS[mode]}, {when}": dict(color=colours[mode], linestyle="--" if when == "init" else "-")
              for mode, when in profiles}
    draw_profiles(right, curves, f"gradient flow through time at T={longest} (fused kernels)", styles)
    right.set_ylabel("mean ||dL/dh_t|| / at distance 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusedrnn study gradient-flow", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, help="sizes (default: gpu with CUDA, else cpu)")
    parser.add_argument("--lengths", help="comma-separated sequence lengths")
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--steps", type=int, help="training steps per cell and length")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--cells", default=",".join(CELLS), help=f"from {', '.join(CELLS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gradient_flow_study", help="folder for the CSV and PNG")
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:  # the recorded batches run the fused kernels: on the CPU in Triton's interpreter
        os.environ.setdefault("TRITON_INTERPRET", "1")
        if "triton" in sys.modules and os.environ["TRITON_INTERPRET"] in ("", "0"):
            parser.error("no GPU: the fused kernels need TRITON_INTERPRET=1, set before triton is imported")
    for name, value in PRESETS[args.preset or ("gpu" if cuda else "cpu")].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    lengths = sorted(int(v) for v in str(args.lengths).split(","))
    cells = [c.strip() for c in args.cells.split(",")]
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        parser.error(f"unknown cells {unknown}; choose from {', '.join(CELLS)}")
    device = torch.device("cuda" if cuda else "cpu")
    out = Path(args.out)
    torch.set_num_threads(min(torch.get_num_threads(), 2))

    results, profiles = [], {}
    print(f"adding problem on {device}: hidden {args.hidden}, {args.steps} steps of batch {args.batch}, "
          f"Adam lr {args.lr}")
    print(f"{'cell':<11} {'T':>5} {'accuracy':>9} {'MSE':>8} {'train s':>8}")
    for mode in cells:
        for length in lengths:
            if length == lengths[-1]:
                torch.manual_seed(args.seed)
                profiles[(mode, "init")] = gradient_profile(make_model(mode, args.hidden, device), length, args, device)
            result, model = train(mode, length, args, device)
            results.append(result)
            print(f"{LABELS[mode]:<11} {length:>5} {result.accuracy:>9.3f} {result.mse:>8.4f} {result.seconds:>8.1f}",
                  flush=True)
            if length == lengths[-1]:
                profiles[(mode, "trained")] = gradient_profile(model, length, args, device)

    longest = lengths[-1]
    print(f"\ngradient norm at distance d from the loss relative to d=0, T={longest} (fused backward kernels):")
    marks = sorted({d for d in (1, 5, 10, 25, 50, 100, 200, 400, longest - 1) if d < longest})
    print(f"{'cell':<20} " + " ".join(f"{'d=' + str(d):>9}" for d in marks))
    for (mode, when), curve in profiles.items():
        print(f"{LABELS[mode] + ', ' + when:<20} " + " ".join(f"{float(curve[d]):>9.2e}" for d in marks))

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gradient_flow.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["kind", "cell", "length_or_when", "x", "value"])
        for r in results:
            writer.writerow(["accuracy", r.cell, r.length, "", f"{r.accuracy:.4f}"])
            writer.writerow(["mse", r.cell, r.length, "", f"{r.mse:.6f}"])
        for (mode, when), curve in profiles.items():
            for d, value in enumerate(curve.tolist()):
                if math.isfinite(value):
                    writer.writerow(["relative_grad_norm", mode, when, d, f"{value:.6e}"])
    plot(results, profiles, longest, out / "gradient_flow.png")
    print(f"\nwrote {out / 'gradient_flow.csv'} and {out / 'gradient_flow.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
