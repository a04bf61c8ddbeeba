"""`fusedrnn bench`: parse, run the suites, write CSV + markdown + plots, log to W&B if asked, and print
the summary last."""

import sys

import torch

from fusedrnn.bench import options, plots, report, results, suites, wandb_log
from fusedrnn.cli_errors import report_error


def main(argv: list[str] | None = None) -> int:
    config = options.parse(list(sys.argv[1:] if argv is None else argv))
    if config.dry_run:
        print("dry run: the tiny grid on CPU, fused kernels in Triton's interpreter", file=sys.stderr)
    env = results.environment(config.device)
    env["threads"] = config.threads
    try:
        config.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file of that name, no permission, ...
        return report_error("fusedrnn bench", OSError(f"--out {str(config.out_dir)!r}: {error.strerror or error}"))
    stem = results.output_stem(env, config.out_dir)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:  # the CSV is rewritten after every case: a run stopped early keeps what it measured
        rows, notes = suites.run(config, after_case=lambda rows: results.write_csv(rows, env, csv_path))
    finally:
        torch.set_num_threads(threads_before)
    results.write_csv(rows, env, csv_path)
    images, plot_note = plots.make_plots(rows, stem)
    if plot_note:
        notes.add("plots", plot_note)
    summary = report.markdown(rows, notes, config, env, [str(p) for p in (csv_path, md_path, *images)])
    md_path.write_text(summary)
    if config.wandb:
        settings = {"grid": config.grid_name, "suites": list(config.suites), "warmup": config.warmup,
                    "repeats": config.repeats, "providers": [p.name for p in config.providers]}
        summary += "\n" + wandb_log.log_run(rows, env, settings, [csv_path, md_path], images, stem.name,
                                       config.out_dir) + "\n"
        md_path.write_text(summary)
    print(summary)
    return 0
