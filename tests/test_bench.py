"""The benchmark suite end to end on the tiny grid (CPU, fused kernels in Triton's interpreter), and the
rules it must keep: no speed without a passed gradient check, absent providers skipped with a note."""

import csv
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from fusedrnn.bench import main, options, plots, providers, report, suites, wandb_log
from fusedrnn.bench.gradcheck import RATIO_ALLOWED, GradCheck, judge
from fusedrnn.bench.grid import PUBLISHED, TINY_CELLS, Case, parse_shape
from fusedrnn.bench.results import COLUMNS, FORWARD_BACKWARD, new_row
from fusedrnn.bench.timing import Timing
from fusedrnn.testing import ErrorReport, tolerance

REQUIRED_COLUMNS = [
    "provider", "cell", "pass", "batch", "hidden", "seq_len", "input_size", "layers", "bidirectional", "dtype",
    "median_ms", "p20_ms", "p80_ms", "peak_mem_mb", "max_abs_err", "rel_err", "err_vs_reference_ratio", "grad_ok",
    "speedup_vs_cudnn", "device", "torch", "triton", "fusedrnn", "git_commit", "date",
]


def run_bench(args: list[str], out_dir: Path, capsys) -> tuple[list[dict], str, str]:
    """Run `fusedrnn bench` in-process; returns the CSV rows, the markdown file and what was printed."""
    assert main([*args, "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    (csv_path,) = out_dir.glob("*.csv")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    return rows, csv_path.with_suffix(".md").read_text(), printed


def section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench")
    assert main(["--dry-run", "--out", str(out_dir)]) == 0
    (csv_path,) = out_dir.glob("*.csv")
    with csv_path.open() as f:
        reader = csv.DictReader(f)
        rows, header = list(reader), reader.fieldnames
    return dict(out_dir=out_dir, csv_path=csv_path, rows=rows, header=header,
                markdown=csv_path.with_suffix(".md").read_text())


def test_dry_run_writes_csv_markdown_and_plots(dry_run):
    assert set(REQUIRED_COLUMNS) <= set(dry_run["header"])
    assert dry_run["header"] == COLUMNS
    assert dry_run["csv_path"].name.startswith("cpu_")
    rows = dry_run["rows"]
    ran = {row["provider"] for row in rows}
    assert {"torch", "fusedrnn-torch", "fusedrnn-stepwise", "cell-loop"} <= ran
    assert {row["pass"] for row in rows} == {"forward", "forward+backward", "step", "step forward+backward"}
    assert {row["cell"] for row in rows} == {*TINY_CELLS, *(f"{mode}Cell" for mode in TINY_CELLS)}
    assert all(row["grad_ok"] == "True" for row in rows), [r for r in rows if r["grad_ok"] != "True"]
    assert all(row["device"] == "cpu" and row["git_commit"] for row in rows)
    timed = [row for row in rows if row["median_ms"]]
    assert timed and all(float(r["p20_ms"]) <= float(r["median_ms"]) <= float(r["p80_ms"]) for r in timed)
    baseline_rows = [row for row in timed if row["provider"] == "torch"]
    assert baseline_rows and all(float(row["speedup_vs_cudnn"]) == 1.0 for row in baseline_rows)
    assert all(row["peak_mem_mb"] == "" for row in rows)  # no memory figure on CPU
    # The dry run must have run the fused kernels in Triton's interpreter, and say so.
    assert all("interpreter" in row["note"] for row in rows if row["provider"] == "fusedrnn-stepwise" and
               row["median_ms"])
    assert len(list(dry_run["out_dir"].glob("*.png"))) >= 2


def test_markdown_tables_name_the_providers(dry_run):
    markdown = dry_run["markdown"]
    speed = section(markdown, "Speedup, forward+backward")
    for provider in ("torch (baseline)", "fusedrnn-stepwise", "fusedrnn-torch", "cell-loop"):
        assert provider in speed
    assert "| LSTM float32 B=3 H=37 T=7 |" in speed
    assert "LSTMCell float32 B=3 H=37 |" in section(markdown, "Single cell step (forward)")
    assert "LSTMCell float32 B=3 H=37 |" in section(markdown, "Single cell step, forward+backward")
    assert "L=2 bidir" in section(markdown, "Gradient check")
    skipped = section(markdown, "Providers")
    assert "flashrnn: needs a CUDA GPU" in skipped
    assert "compiled-cell-loop" in skipped


def test_summary_is_printed_last(tmp_path, capsys):
    _, markdown, printed = run_bench(["--dry-run", "--cells", "GRU", "--suites", "speed", "--providers", "torch"],
                                     tmp_path, capsys)
    assert printed.rstrip().endswith(markdown.rstrip())
    assert "GRU float32 B=3 H=37 T=7" in markdown


def perturbed_build(case, template):
    """torch.nn's module with every output scaled by 1.01: a wrong implementation, however fast."""
    runner = providers.module_runner(providers.copy_of(template, type(template), case))
    forward = runner.forward
    return providers.Runner(lambda x, states: [1.01 * t for t in forward(x, states)], runner.params)


def test_a_wrong_provider_fails_the_grad_check_and_gets_no_speed(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(providers.PROVIDERS, "perturbed",
                        providers.Provider("perturbed", "scales its outputs", ("sequence",), perturbed_build))
    rows, markdown, _ = run_bench(["--dry-run", "--cells", "LSTM", "--suites", "speed", "--providers", "perturbed"],
                                  tmp_path, capsys)
    wrong = [row for row in rows if row["provider"] == "perturbed"]
    assert wrong and all(row["grad_ok"] == "False" for row in wrong)
    assert all(row["median_ms"] == "" and row["speedup_vs_cudnn"] == "" for row in wrong)
    assert all(row["note"].startswith("grad check failed") for row in wrong)
    assert float(wrong[0]["err_vs_reference_ratio"]) > RATIO_ALLOWED
    baseline = [row for row in rows if row["provider"] == "torch"]
    assert baseline and all(row["grad_ok"] == "True" and row["median_ms"] for row in baseline)
    speed = section(markdown, "Speedup, forward+backward")
    assert "grad check failed" in speed
    assert "FAIL" in section(markdown, "Gradient check")


def test_missing_optional_provider_is_skipped_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(providers.flashrnn_adapter, "flashrnn_function", lambda: None)
    assert providers.PROVIDERS["flashrnn"].unavailable(torch.device("cuda")) == "not installed (pip install flashrnn)"

    def failing_build(case, template):
        raise ImportError("No module named 'otherrnn'")

    monkeypatch.setitem(providers.PROVIDERS, "otherrnn",
                        providers.Provider("otherrnn", "another library", ("sequence",), failing_build))
    rows, markdown, _ = run_bench(
        ["--dry-run", "--cells", "LSTM", "--suites", "speed", "--providers", "flashrnn,otherrnn"], tmp_path, capsys)
    assert {row["provider"] for row in rows} == {"torch"}
    notes = section(markdown, "Providers")
    assert "- flashrnn: needs a CUDA GPU" in notes
    assert "otherrnn: LSTM float32 B=3 H=37 T=7: could not be built: ImportError" in notes


def test_gpu_sections_of_the_summary_from_a_fabricated_gpu_run():
    """What a GPU run prints beyond a CPU one (memory ratios, the performance targets, FlashRNN's published point),
    from made-up measurements pushed through the same row building as a real run."""
    case = Case("sequence", "LSTM", torch.bfloat16, PUBLISHED["batch"], PUBLISHED["hidden"], PUBLISHED["hidden"],
                PUBLISHED["seq_len"])
    config = suites.RunConfig(torch.device("cuda"), "default", [case], suites.SUITES, [], {}, 1, 3, Path("."))
    passed = GradCheck({"output": ErrorReport(1e-3, 1e-3, True)}, [])
    checks = {name: passed for name in ("cudnn", "fusedrnn-stepwise", "cell-loop")}
    fwd_bwd_ms = {"cudnn": 6.0, "fusedrnn-stepwise": 10.0, "cell-loop": 40.0}
    timings = {}
    for name, ms in fwd_bwd_ms.items():
        timings[name, "forward+backward"] = Timing(ms, 0.9 * ms, 1.1 * ms, 3)
        timings[name, "forward"] = Timing(ms / 3, 0.3 * ms, 0.4 * ms, 3)
    peaks = {"cudnn": 100.0, "fusedrnn-stepwise": 110.0, "cell-loop": 400.0}
    rows = suites._rows(case, config, "cudnn", dict.fromkeys(checks), checks, timings, peaks, set())
    stepwise = next(r for r in rows if r["provider"] == "fusedrnn-stepwise" and r["pass"] == "forward+backward")
    assert stepwise["speedup_vs_cudnn"] == pytest.approx(0.6) and stepwise["mem_vs_cudnn"] == pytest.approx(1.1)
    env = {"device": "NVIDIA H100 80GB HBM3", "date": "2026-11-27 21:30", "torch": "2", "triton": "3",
           "fusedrnn": "0.1.0", "git_commit": "abc1234"}
    markdown = report.markdown(rows, suites.Notes(), config, env, [])
    assert "| 100.0 MB | 1.10x, 110.0 MB | 4.00x, 400.0 MB |" in section(markdown, "Peak memory")
    assert "issue" not in markdown
    bar = section(markdown, "Targets for fusedrnn-stepwise")
    assert "| yes (0.60x) | yes (4.00x) | yes (1.10x) | yes |" in bar and "not on a GPU" not in bar
    assert f"{PUBLISHED['forward_ms']} ms forward" in section(markdown, "Published reference point")


def test_judge_scales_the_tolerance_with_the_baselines_error():
    atol, _ = tolerance(torch.float32)
    baseline = {"output": ErrorReport(1.0, 10 * atol, False)}
    within = {"output": ErrorReport(1.0, RATIO_ALLOWED * 10 * atol, False)}
    beyond = {"output": ErrorReport(1.0, 1.01 * RATIO_ALLOWED * 10 * atol, False)}
    assert judge(within, baseline).ok
    assert not judge(beyond, baseline).ok
    assert not judge(within, None).ok
    assert not judge({"output": ErrorReport(math.inf, math.inf, False)}, {"output": ErrorReport(math.inf, math.inf,
                                                                                                 False)}).ok


def test_options(monkeypatch):
    assert parse_shape("64x512x256") == (64, 512, 256)
    with pytest.raises(ValueError):
        parse_shape("64x512")
    config = options.parse(["--device", "cpu", "--shapes", "4x8x3,2x8x5", "--cells", "gru", "--dtypes", "fp32",
                            "--suites", "grad,cell", "--layers", "2", "--bidirectional"])
    sequence = [c for c in config.cases if c.kind == "sequence"]
    assert [(c.batch, c.hidden, c.seq_len) for c in sequence] == [(4, 8, 3), (2, 8, 5)]
    assert all(c.cell == "GRU" and c.layers == 2 and c.bidirectional for c in sequence)
    assert {(c.batch, c.hidden) for c in config.cases if c.kind == "step"} == {(4, 8), (2, 8)}
    monkeypatch.setenv(options.DRY_RUN_ENV, "1")
    config = options.parse([])
    assert config.dry_run and config.grid_name == "tiny" and config.device.type == "cpu"
    with pytest.raises(SystemExit):
        options.parse(["--providers", "nosuchprovider"])


class FakeWandb(types.ModuleType):
    """Records what the W&B logging would have sent."""

    def __init__(self):
        super().__init__("wandb")
        self.logged, self.artifacts, self.finished = {}, [], False
        fake = self

        class Run:
            url = None
            dir = "wandb/offline-run"

            def log(self, data):
                fake.logged.update(data)

            def log_artifact(self, artifact):
                fake.artifacts.append(artifact)

            def finish(self):
                fake.finished = True

        class Artifact:
            def __init__(self, name, type):
                self.name, self.files = name, []

            def add_file(self, path):
                self.files.append(path)

        self.Run, self.Artifact = Run, Artifact
        self.Table = lambda columns, data: {"columns": columns, "data": data}
        self.Image = lambda path: ("image", path)

    def login(self, prompt=False):
        return False

    def init(self, **kwargs):
        self.init_kwargs = kwargs
        return self.Run()


def test_wandb_logs_table_plots_and_files(dry_run, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    images = sorted(dry_run["out_dir"].glob("*.png"))
    line = wandb_log.log_run(dry_run["rows"], {"device": "cpu"}, {"grid": "tiny"}, [dry_run["csv_path"]], images,
                             "cpu_test", dry_run["out_dir"])
    assert line.startswith("W&B: logged to offline run")
    assert fake.init_kwargs["mode"] == "offline" and fake.init_kwargs["dir"] == str(dry_run["out_dir"])
    assert fake.logged["results"]["columns"] == COLUMNS
    assert len(fake.logged["results"]["data"]) == len(dry_run["rows"])
    assert sum(key.startswith("plots/") for key in fake.logged) == len(images)
    assert fake.artifacts[0].files == [str(dry_run["csv_path"])] and fake.finished


def test_wandb_missing_is_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert "wandb is not installed" in wandb_log.log_run([], {}, {}, [], [], "x")


def test_console_entry_points():
    from fusedrnn import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    done = subprocess.run([sys.executable, "-m", "fusedrnn.bench", "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=120)
    assert done.returncode == 0 and "--dry-run" in done.stdout


def test_bench_wandb_files_go_under_out(tmp_path, capsys, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_bench(["--dry-run", "--cells", "LSTM", "--suites", "grad", "--providers", "torch", "--wandb"], tmp_path,
              capsys)
    assert fake.init_kwargs["dir"] == str(tmp_path) and fake.finished


def timed_row(provider, batch, hidden, ms, spread, seq_len=7, interpreted=False, cell="LSTM"):
    case = Case("sequence", cell, torch.float32, batch, hidden, hidden, seq_len)
    row = new_row(provider, case, FORWARD_BACKWARD, "torch")
    row.update(median_ms=ms, p20_ms=ms - spread, p80_ms=ms + spread, note=suites.INTERPRETER_NOTE if interpreted else "")
    return row


def test_heatmap_marks_interpreter_times_and_noise(tmp_path):
    rows = []
    # B=2: 10 ms +- 1 against 10.5 ms +- 1 (overlapping: noise); B=4: 10 ms +- 0.1 against 20 ms +- 0.1.
    for batch, base_ms, mine_ms, spread in ((2, 10.0, 10.5, 1.0), (4, 10.0, 20.0, 0.1)):
        for provider, ms in (("torch", base_ms), ("fusedrnn-stepwise", mine_ms)):
            row = timed_row(provider, batch, 8, ms, spread, interpreted=provider != "torch")
            row["speedup_vs_cudnn"] = base_ms / ms
            rows.append(row)
    (cells,) = plots.heatmap_cells(rows, "fusedrnn-stepwise").values()
    by_batch = {c.batch: c for c in cells}
    assert by_batch[2].colour == 1.0 and by_batch[2].label == "≈0.952x†"
    assert by_batch[4].colour == pytest.approx(0.5) and by_batch[4].label == "0.5x†"
    assert plots.speedup_heatmaps(rows, "fusedrnn-stepwise", tmp_path / "heat.png").stat().st_size > 0


def test_time_plot_has_every_batch_size(tmp_path):
    rows = [timed_row(provider, batch, hidden, 1.0 + hidden / 8, 0.1, seq_len=7 if batch < 8 else 5)
            for provider in ("torch", "fusedrnn-stepwise") for batch in (2, 4, 8) for hidden in (8, 16)]
    rows += [timed_row("torch", 2, 8, 1.0, 0.1, cell="GRU")]
    assert plots.time_panels(rows) == [("GRU", "float32", 2, 7), ("LSTM", "float32", 2, 7), ("LSTM", "float32", 4, 7),
                                       ("LSTM", "float32", 8, 5)]
    assert plots.time_against_hidden(rows, tmp_path / "time.png").stat().st_size > 0
