"""What each regulariser costs: forward+backward of a training step of a fused layer with and without it,
beside what a user would run otherwise (issue 17's overhead bar: <= 10% on the GPU).

    PYTHONPATH=. python benchmarks/regularizers.py [--cell LSTM] [--batch 64] [--hidden 512] [--steps 128]

Rows, for one cell, shape and dtype, all timed side by side in one run (median of CUDA-event times):
  fused           the fused layer in training, no regulariser (its backend: --backend, default auto)
  fused + ...     the same layer with weight_drop, recurrent_dropout, both (p = 0.25), zoneout (z = 0.25), or
                  layer_norm (not a regulariser, but the same kind of option: whole-row tiles)
  cuDNN           nn.LSTM/GRU, no regulariser
  cuDNN + weight_drop   cuDNN on DropConnect'ed weights (AWD-LSTM's way; fusedrnn's backend="torch" path)
  loop + recurrent_dropout  a loop of torch ops over time, the way to get recurrent dropout without fused
                  kernels (fusedrnn's backend="torch" path, fusedrnn/nn/torch_loop.py)
  loop + zoneout  the same loop of torch ops with zoneout (loop + layer_norm: with layer norm)
Each row's overhead is against "fused" (the fused rows) or "cuDNN" (the others). Prints a markdown
table and writes it, with a CSV, to benchmarks/results/<GPU>_<date>_regularizers.{md,csv}.
GPU_CHECK_DRY=1 runs it on the CPU at tiny sizes (kernels in Triton's interpreter), results under dry-run/.
"""

import argparse
import csv
import datetime
import os
import re
import sys
from pathlib import Path

DRY = os.environ.get("GPU_CHECK_DRY") == "1"
if DRY:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from fusedrnn.bench.timing import time_call  # noqa: E402
from fusedrnn.nn.rnn import FUSED_LAYERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
P = 0.25


def variants(cell: str, size: int, backend: str) -> dict[str, torch.nn.Module]:
    """The layers to time, by row name, all with the same weights."""
    torch.manual_seed(0)
    plain = getattr(torch.nn, cell)(size, size)
    fused = FUSED_LAYERS[cell]

    def layer(backend: str, **options) -> torch.nn.Module:
        m = fused(size, size, backend=backend, **options)
        m.load_state_dict(plain.state_dict(), strict=not options.get("layer_norm"))  # its own parameters: 1, 0
        return m

    return {
        "fused": layer(backend),
        "fused + weight_drop": layer(backend, weight_drop=P),
        "fused + recurrent_dropout": layer(backend, recurrent_dropout=P),
        "fused + both": layer(backend, weight_drop=P, recurrent_dropout=P),
        "fused + zoneout": layer(backend, zoneout=P),
        "fused + layer_norm": layer(backend, layer_norm=True),
        "cuDNN": layer("torch"),
        "cuDNN + weight_drop": layer("torch", weight_drop=P),
        "loop + recurrent_dropout": layer("torch", recurrent_dropout=P),
        "loop + zoneout": layer("torch", zoneout=P),
        "loop + layer_norm": layer("torch", layer_norm=True),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="LSTM", choices=("LSTM", "GRU"))
    parser.add_argument("--batch", type=int, default=3 if DRY else 64)
    parser.add_argument("--hidden", type=int, default=8 if DRY else 512)
    parser.add_argument("--steps", type=int, default=4 if DRY else 128)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--backend", default="triton" if DRY else "auto")
    parser.add_argument("--repeats", type=int, default=2 if DRY else 20)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not DRY:
        print("regularizers.py times on a CUDA GPU; GPU_CHECK_DRY=1 runs it on the CPU at tiny sizes.")
        return 2
    device = torch.device("cpu" if DRY else "cuda")
    dtype = getattr(torch, args.dtype)
    layers = {name: m.to(device, dtype).train() for name, m in variants(args.cell, args.hidden, args.backend).items()}
    inputs = [torch.randn(args.steps, args.batch, args.hidden, device=device, dtype=dtype, requires_grad=True)
              for _ in range(3)]

    def training_step(layer):
        def call(x):
            out, _ = layer(x)
            out.float().square().mean().backward()
        return call

    timings = {name: time_call(training_step(layer), inputs, 1 if DRY else 5, args.repeats, device)
               for name, layer in layers.items()}
    gpu = "cpu-dry-run" if DRY else torch.cuda.get_device_name()
    title = (f"{args.cell} {args.dtype} B={args.batch} H={args.hidden} T={args.steps}, fused backend {args.backend}, "
             f"p={P}, forward+backward, {gpu}, torch {torch.__version__}")
    lines = [f"# Regularisers: {title}", "", "| row | median ms [p20, p80] | overhead |", "|---|---|---|"]
    rows = []
    for name, t in timings.items():
        base = timings["fused" if name.startswith("fused") else "cuDNN"]
        overhead = t.median_ms / base.median_ms - 1
        lines.append(f"| {name} | {t.median_ms:.3f} [{t.p20_ms:.3f}, {t.p80_ms:.3f}] | {overhead:+.1%} |")
        rows.append(dict(row=name, cell=args.cell, dtype=args.dtype, batch=args.batch, hidden=args.hidden,
                         steps=args.steps, backend=args.backend, p=P, median_ms=t.median_ms, p20_ms=t.p20_ms,
                         p80_ms=t.p80_ms, overhead=overhead, device=gpu))
    if DRY:
        lines.append("\nDry run: Triton's interpreter on the CPU; these times measure the interpreter.")
    text = "\n".join(lines)
    print(text)
    out_dir = ROOT / "benchmarks" / "results" / ("dry-run" if DRY else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{re.sub(r'[^A-Za-z0-9.]+', '-', gpu)}_{datetime.datetime.now():%Y-%m-%d_%H%M}_regularizers-{args.cell}"
    (out_dir / f"{stem}.md").write_text(text + "\n")
    with open(out_dir / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
