"""`--wandb`: the results table, the plots and the files of a run, logged to a Weights & Biases run.

wandb is imported only here and only when asked for; without it the run goes on with a note. The run is
offline (synced later with `wandb sync`) unless the user is logged in or sets WANDB_MODE. Its files go
to `--out`/wandb, beside the CSV, not to the working directory.
"""

import os
from pathlib import Path

from fusedrnn.bench.results import COLUMNS

PROJECT = "fusedrnn-bench"


def _mode(wandb) -> str | None:
    if os.environ.get("WANDB_MODE"):
        return None  # wandb reads it itself
    try:
        logged_in = wandb.login(prompt=False)  # recent wandb: False instead of asking for a key
    except TypeError:  # older wandb has no `prompt`: only a key in the environment counts
        logged_in = bool(os.environ.get("WANDB_API_KEY"))
    except Exception:
        logged_in = False
    return "online" if logged_in else "offline"


def log_run(rows: list[dict], env: dict, config: dict, files: list[Path], images: list[Path], name: str,
            out_dir: Path | None = None) -> str:
    """Log to W&B, its files in `out_dir`/wandb (wandb's default, ./wandb, without); returns a line for the
    summary saying where the run went (or why it did not)."""
    try:
        import wandb
    except ImportError:
        return "W&B: wandb is not installed (pip install wandb); nothing was logged."
    try:
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=name, job_type="benchmark",
                         config={**config, **env}, mode=_mode(wandb),
                         **({"dir": str(out_dir)} if out_dir is not None else {}))
        table = wandb.Table(columns=COLUMNS, data=[[env.get(c, row[c]) for c in COLUMNS] for row in rows])
        run.log({"results": table, **{f"plots/{image.stem}": wandb.Image(str(image)) for image in images}})
        artifact = wandb.Artifact(name, type="benchmark")
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
        where = getattr(run, "url", None) or f"offline run in {getattr(run, 'dir', 'wandb/')}"
        run.finish()
    except Exception as error:  # logging must never cost the measurements
        return f"W&B: logging failed ({type(error).__name__}: {error}); results are in the files above."
    return f"W&B: logged to {where}"
