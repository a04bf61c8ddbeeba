"""`make gpu-quality`: short training runs of the Lightning models on a GPU, in one prepared call.

The fits run side by side (each is bound by kernel launches, so one GPU has room for several), each for
a wall-clock budget with the plateau learning-rate schedule (a time budget does not say how many epochs
a run gets, which a cosine schedule would need). Then each best checkpoint is evaluated through the same
CLI a user runs: the char-LM with `validate`, the NER tagger with `test`.

Like gpu_check.py it uses the machine's own python3 from the source tree and installs nothing; W&B is
replaced by a CSV logger (the GPU machine has no wandb). Logs, metrics and a summary go to
benchmarks/results/<GPU>_<date>_quality*, and a tar of them to $OUT when that is set.

  GPU_QUALITY_MINUTES  the fits' wall-clock budget (default 4)
  FUSEDRNN_DATA        the data folder (default ../shared/data; see its README)
  GPU_CHECK_DRY=1      the same path on the CPU: a few batches, backend=torch, results under dry-run/
  --backend B          the fused layers' backend for the fits (default auto: what its table picks for this GPU)
"""

import argparse
import csv
import datetime
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from gpu_check import without_machine_paths  # this folder is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
DRY = os.environ.get("GPU_CHECK_DRY") == "1"
# Relative to the repository (the commands run there), so logs hold no machine paths.
DATA = Path(os.path.relpath(os.environ.get("FUSEDRNN_DATA", ROOT.parent / "shared" / "data"), ROOT))
CSV_LOGGER = '{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}'

# name: (model command, config, fit overrides, evaluation subcommand, metric of the best checkpoint)
RUNS = {
    "charlm-2x512": (
        "charlm",
        "configs/charlm.yaml",
        ["--data.path", str(DATA / "tinyshakespeare" / "input.txt"), "--data.download", "false"],
        "validate",
        "val/loss",
    ),
    "charlm-3x768": (
        "charlm",
        "configs/charlm.yaml",
        ["--data.path", str(DATA / "tinyshakespeare" / "input.txt"), "--data.download", "false",
         "--model.num_layers", "3", "--model.hidden_size", "768", "--model.dropout", "0.4",
         "--data.batch_size", "128"],
        "validate",
        "val/loss",
    ),
    "charlm-awd": (  # the 3x768 network with DropConnect on W_hh (weight_drop) instead of part of its dropout
        "charlm",
        "configs/charlm.yaml",
        ["--config", "configs/charlm_awd.yaml",
         "--data.path", str(DATA / "tinyshakespeare" / "input.txt"), "--data.download", "false"],
        "validate",
        "val/loss",
    ),
    "charlm-layer-norm": (  # the 2x512 network layer-normalised: 0.10 nats/char better on the CPU run (NOTES.md)
        "charlm",
        "configs/charlm.yaml",
        ["--data.path", str(DATA / "tinyshakespeare" / "input.txt"), "--data.download", "false",
         "--model.layer_norm", "true"],
        "validate",
        "val/loss",
    ),
    "ner": (
        "ner",
        "configs/ner.yaml",
        [f"--data.{split}_path={DATA / 'conll2003' / f'{name}.txt'}"
         for split, name in (("train", "train"), ("val", "dev"), ("test", "test"))],
        "test",
        "test/f1",
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="torch" if DRY else "auto", choices=("auto", "triton", "torch"))
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated from {','.join(RUNS)}")
    args = parser.parse_args()
    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
    import torch

    if not torch.cuda.is_available() and not DRY:
        print("gpu-quality needs a CUDA GPU; GPU_CHECK_DRY=1 runs it on the CPU for a few batches.")
        return 2
    device = "cpu-dry-run" if DRY else torch.cuda.get_device_name()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M")
    out_dir = ROOT / "benchmarks" / "results" / ("dry-run" if DRY else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{re.sub(r'[^A-Za-z0-9.]+', '-', device)}_{stamp}_quality"
    minutes = float(os.environ.get("GPU_QUALITY_MINUTES", "4"))
    budget = "00:00:00:20" if DRY else f"00:00:{int(minutes):02d}:{int(minutes % 1 * 60):02d}"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    limits = ["--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"] if DRY else []

    def command(name: str, subcommand: str, extra: list[str]) -> list[str]:
        model, config, overrides, _, _ = RUNS[name]
        return [sys.executable, "-m", "fusedrnn.cli", model, subcommand, "--config", config, *overrides,
                "--trainer.logger", CSV_LOGGER % f"runs/gpu-{name}", f"--model.backend={args.backend}",
                *limits, *extra]

    # The fits, side by side.
    fit_extra = ["--trainer.max_time", budget, "--trainer.max_epochs", "1000", "--model.lr_schedule", "plateau"]
    started, fits = time.time(), {}
    for name in names:
        shutil.rmtree(ROOT / "runs" / f"gpu-{name}", ignore_errors=True)  # only this call's checkpoints and metrics
        log = open(out_dir / f"{prefix}-{name}.log", "w")
        cmd = command(name, "fit", fit_extra)
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        fits[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    for process, log in fits.values():
        process.wait()
        log.write(f"\n-> fit exit {process.returncode} after {time.time() - started:.0f} s\n")
        log.flush()

    # Each best checkpoint through the CLI's validate/test.
    summary = [f"# fusedrnn GPU quality runs, {device}, {stamp}", "",
               f"Fits of {budget} (d:h:m:s) each, side by side; backend={args.backend}; torch {torch.__version__}.", "",
               "| run | epochs | best checkpoint | evaluated | fit exit |", "| --- | --- | --- | --- | --- |"]
    for name, (process, log) in fits.items():
        _, _, _, subcommand, metric = RUNS[name]
        checkpoints = sorted((ROOT / "runs" / f"gpu-{name}").rglob("epoch*.ckpt"))
        figures = "no checkpoint"
        if checkpoints:
            best = checkpoints[-1].relative_to(ROOT)
            run = subprocess.run(command(name, subcommand, ["--ckpt_path", str(best)]), cwd=ROOT, env=env,
                                 capture_output=True, text=True)
            log.write(f"\n$ fusedrnn ... {subcommand} --ckpt_path {best}\n{run.stdout}{run.stderr}")
            found = dict(re.findall(r"^[\s│|]*((?:val|test)/\w+)[\s│|]+([-0-9.e]+)[\s│|]*$", run.stdout, re.M))
            figures = ", ".join(f"{k} {float(v):.4f}" for k, v in found.items() if "_" not in k) or "see log"
        summary.append(f"| {name} | {epochs_run(ROOT / 'runs' / f'gpu-{name}')} | "
                       f"{checkpoints[-1].name if checkpoints else '-'} | {figures} | {process.returncode} |")
        log.close()
    for name in names:
        path = out_dir / f"{prefix}-{name}.log"
        path.write_text(without_machine_paths(path.read_text()))
    text = "\n".join(summary) + "\n"
    (out_dir / f"{prefix}.md").write_text(text)
    print(text)
    for name in names:
        print(f"--- tail of {prefix}-{name}.log")
        print("\n".join((out_dir / f"{prefix}-{name}.log").read_text().splitlines()[-15:]))

    if os.environ.get("OUT"):
        with tarfile.open(Path(os.environ["OUT"]) / f"{prefix}.tar.gz", "w:gz") as tar:
            for path in out_dir.glob(f"{prefix}*"):
                tar.add(path, arcname=path.name)
            for name in names:
                for metrics in (ROOT / "runs" / f"gpu-{name}").rglob("metrics.csv"):
                    tar.add(metrics, arcname=f"{name}/{metrics.relative_to(ROOT / 'runs' / f'gpu-{name}')}")
    return 0 if all(p.returncode == 0 for p, _ in fits.values()) else 1


def epochs_run(run_dir: Path) -> str:
    """Epochs the fit logged (from its first metrics.csv, the fit's own)."""
    files = sorted(run_dir.rglob("metrics.csv"))
    if not files:
        return "-"
    with open(files[0]) as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")]
    return str(max(epochs) + 1) if epochs else "-"


if __name__ == "__main__":
    sys.exit(main())
