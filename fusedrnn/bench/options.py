"""The `fusedrnn bench` command line, turned into a RunConfig."""

import argparse
import os
from pathlib import Path

import torch

from fusedrnn.bench import grid as grids
from fusedrnn.bench.providers import PROVIDERS, Provider, baseline_name
from fusedrnn.bench.suites import SUITES, RunConfig
from fusedrnn.cli_errors import OneLineArgumentParser

DRY_RUN_ENV = "GPU_CHECK_DRY"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="fusedrnn bench",
        description="Speed, memory and gradient error of fusedrnn's LSTM/GRU against cuDNN (torch.nn), a Python "
        "loop over nn.LSTMCell, torch.compile of it and other libraries, side by side in one run.",
        epilog="Without arguments: the gpu-check grid on a GPU, the cpu grid otherwise. Results: a CSV, a markdown "
        "summary (also printed) and PNG plots in --out.",
    )
    parser.add_argument("--grid", choices=list(grids.GRIDS), help="named grid (default: gpu-check on GPU, cpu on CPU)")
    parser.add_argument("--shapes", help="comma-separated BxHxT shapes instead of a grid, e.g. 64x512x256,16x1024x512")
    parser.add_argument("--layers", type=int, default=1, help="layers of the --shapes cases (default 1)")
    parser.add_argument("--bidirectional", action="store_true", help="make the --shapes cases bidirectional")
    parser.add_argument("--cells", help="comma-separated: LSTM,GRU (default both)")
    parser.add_argument("--dtypes", help="comma-separated: float32,bfloat16,float16 (or fp32,bf16,fp16)")
    parser.add_argument("--suites", default=",".join(SUITES),
                        help=f"comma-separated from {','.join(SUITES)} (default all). The grad check always runs "
                        "where speed or memory is measured: only a provider that passes it gets a speed.")
    parser.add_argument("--providers",
                        help=f"comma-separated from {','.join(PROVIDERS)} (default: those meant for the device). "
                        "The baseline (cudnn on GPU, torch on CPU) always runs.")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default: the grid's)")
    parser.add_argument("--warmup", type=int, help="untimed calls before timing (default: the grid's)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads during the run (default on CPU: 1, so that shared cores do not stall "
                        "OpenMP workers and small shapes time repeatably; on GPU: torch's default)")
    parser.add_argument("--out", default="benchmarks/results", help="output folder (default benchmarks/results)")
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots to Weights & Biases")
    parser.add_argument("--dry-run", action="store_true",
                        help=f"the tiny grid on CPU, fused kernels in Triton's interpreter (also: {DRY_RUN_ENV}=1)")
    return parser


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _device(args, dry_run: bool) -> torch.device:
    if dry_run or args.device == "cpu":
        return torch.device("cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cells(args) -> tuple[str, ...]:
    cells = tuple(c.upper() for c in _split(args.cells)) or grids.CELLS
    unknown = [c for c in cells if c not in grids.CELLS]
    if unknown:
        raise ValueError(f"unknown cell {unknown[0]!r}; choose from {', '.join(grids.CELLS)}")
    return cells


def _cases(args, grid: grids.Grid, suites: tuple[str, ...], cells, dtypes) -> list[grids.Case]:
    if args.shapes:
        dtypes = dtypes or (torch.float32,)
        cases = []
        for batch, hidden, seq_len in (grids.parse_shape(s) for s in _split(args.shapes)):
            small = grids.interpreter_sized(batch, hidden, seq_len)
            cases += grids.sequence_cases(cells, dtypes, [(batch, hidden, seq_len)], layers=args.layers,
                                          bidirectional=args.bidirectional, interpreter_ok=small)
        step_shapes = dict.fromkeys((c.batch, c.hidden) for c in cases)
        cases += [case for b, h in step_shapes
                  for case in grids.step_cases(cells, dtypes, [(b, h)], interpreter_ok=grids.interpreter_sized(b, h))]
    else:
        if args.layers != 1 or args.bidirectional:
            raise ValueError("--layers and --bidirectional apply to --shapes")
        cases = [c for c in grid.cases if c.cell in cells and (not dtypes or c.dtype in dtypes)]
    measured = {"speed", "memory"} & set(suites)

    def wanted(case):
        if case.kind == "step":
            return "cell" in suites
        return "grad" in suites or (case.timed and bool(measured))

    return [case for case in cases if wanted(case)]


def select_providers(requested: list[str], device: torch.device) -> tuple[list[Provider], dict[str, str]]:
    """The providers that run, in registry order, and why each other one does not."""
    unknown = [name for name in requested if name not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown provider {unknown[0]!r}; choose from {', '.join(PROVIDERS)}")
    baselines = {baseline_name(kind, device) for kind in ("sequence", "step")}
    chosen, skipped = [], {}
    for name, provider in PROVIDERS.items():
        asked = (name in requested or name in baselines) if requested else provider.on_by_default(device)
        why = provider.unavailable(device)
        if not asked:
            if not requested:
                skipped[name] = why or f"off by default on {device.type}; add it with --providers"
            continue
        if why:
            skipped[name] = why
            continue
        chosen.append(provider)
    return chosen, skipped


def parse(argv: list[str]) -> RunConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    dry_run = args.dry_run or os.environ.get(DRY_RUN_ENV, "") == "1"
    try:
        device = _device(args, dry_run)
        if device.type == "cpu":
            # On CPU tensors the fused kernels run only in Triton's interpreter, which is chosen when the
            # kernels are first imported: set it before any of them is.
            os.environ.setdefault("TRITON_INTERPRET", "1")
        grid_name = "tiny" if dry_run else args.grid or ("gpu-check" if device.type == "cuda" else "cpu")
        grid = grids.named_grid(grid_name)
        suites = tuple(_split(args.suites))
        unknown = [s for s in suites if s not in SUITES]
        if unknown or not suites:
            raise ValueError(f"unknown suite {unknown[0] if unknown else ''!r}; choose from {', '.join(SUITES)}")
        if args.threads is not None and args.threads < 1:
            raise ValueError("--threads must be at least 1")
        dtypes = tuple(grids.parse_dtype(d) for d in _split(args.dtypes))
        cases = _cases(args, grid, suites, _cells(args), dtypes)
        providers, skipped = select_providers(_split(args.providers), device)
    except ValueError as error:
        parser.error(str(error))
    if not cases:
        parser.error("no case left to run: check --cells, --dtypes and --suites against the grid")
    return RunConfig(
        device=device, grid_name="custom shapes" if args.shapes else grid.name, cases=cases, suites=suites,
        providers=providers, skipped=skipped, warmup=args.warmup if args.warmup is not None else grid.warmup,
        repeats=args.repeats if args.repeats is not None else grid.repeats, out_dir=Path(args.out),
        wandb=args.wandb, dry_run=dry_run,
        threads=args.threads if args.threads is not None else (1 if device.type == "cpu" else torch.get_num_threads()),
    )
