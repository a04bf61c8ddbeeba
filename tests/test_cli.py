"""The `fusedrnn` command as a new user meets it: a user's mistake (unknown command, subcommand or option, a
missing, empty or malformed file) is one stderr line `fusedrnn CMD: error: ...` with exit status 2, and
FUSEDRNN_DEBUG=1 gives the traceback instead. Everything runs in process, on tiny inputs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

from fusedrnn import __version__, cli  # noqa: E402
from fusedrnn.cli_errors import DEBUG_ENV  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]


def one_error_line(capsys, prefix: str) -> str:
    """The stderr of the call: no traceback, and exactly one line, the last, starting with `prefix: error:`."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    errors = [line for line in lines if "error:" in line]
    assert errors == [lines[-1]], err
    assert lines[-1].startswith(f"{prefix}: error: "), err
    return lines[-1]


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)


def test_version_and_unknown_commands(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"fusedrnn {__version__}\n"
    assert cli.main(["foo"]) == 2
    line = one_error_line(capsys, "fusedrnn")
    assert "unknown command 'foo'" in line and "bench, charlm, ner, seq2seq" in line
    assert cli.main(["--frobnicate"]) == 2
    assert "unknown option '--frobnicate'" in one_error_line(capsys, "fusedrnn")
    assert cli.main(["--help"]) == 0
    assert "--version" in capsys.readouterr().out


@pytest.mark.parametrize("model, own", [("charlm", ["sample"]), ("ner", ["tag"]), ("seq2seq", ["translate"])])
@pytest.mark.parametrize("word", ["frobnicate", "predict"])
def test_unknown_subcommand_lists_the_real_ones(capsys, model, own, word):
    assert cli.main([model, word]) == 2
    line = one_error_line(capsys, f"fusedrnn {model}")
    assert f"unknown subcommand {word!r}" in line
    assert line.endswith(f"(choose from {', '.join(['fit', 'validate', 'test', *own])})")


def test_unknown_option_of_a_training_command(capsys):
    assert cli.main(["ner", "fit", "--data.nosuch", "1"]) == 2
    assert "--data.nosuch" in one_error_line(capsys, "fusedrnn ner fit")


def test_own_subcommand_argument_errors_are_one_line(capsys, tmp_path):
    assert cli.main(["charlm", "sample"]) == 2
    assert "--ckpt_path" in one_error_line(capsys, "fusedrnn charlm sample")
    assert cli.main(["seq2seq", "translate", "--ckpt_path", str(tmp_path / "none.ckpt")]) == 2
    assert "none.ckpt" in one_error_line(capsys, "fusedrnn seq2seq translate")


def conll(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture
def files(tmp_path):
    good = conll(tmp_path / "good.txt", "Alice B-PER\nmet O\nBob B-PER\n\n")
    return {
        "good": good,
        "missing": str(tmp_path / "missing.txt"),
        "empty": conll(tmp_path / "empty.txt", ""),
        "malformed": conll(tmp_path / "bad.txt", "Alice B-PER\nmet O extra\n\n"),
        "badtag": conll(tmp_path / "badtag.txt", "Alice X-PER\n\n"),
        "binary": str(tmp_path / "bin.txt") if (tmp_path / "bin.txt").write_bytes(b"\xff\xfe a b\n") else "",
    }


@pytest.mark.parametrize("bad, which, message", [
    ("missing", "train", "does not exist"),
    ("empty", "train", "holds no sentences"),
    ("malformed", "train", "bad.txt:2: expected 2 columns"),
    ("badtag", "train", "malformed tag 'X-PER'"),
    ("missing", "val", "does not exist"),  # read in setup, not while the classes are built
    ("malformed", "val", "bad.txt:2"),
    ("binary", "train", "bin.txt"),
])
def test_ner_data_errors_are_one_line(capsys, files, tmp_path, bad, which, message):
    bad = files[bad]
    paths = {"train": files["good"], "val": files["good"], which: bad}
    args = ["ner", "fit", "--data.train_path", paths["train"], "--data.val_path", paths["val"], *QUIET,
            "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path)]
    assert cli.main(args) == 2
    assert message in one_error_line(capsys, "fusedrnn ner fit")


def test_charlm_and_seq2seq_missing_files_are_one_line(capsys, tmp_path):
    args = ["charlm", "fit", "--data.path", str(tmp_path / "none.txt"), *QUIET]
    assert cli.main(args) == 2
    assert "none.txt' does not exist" in one_error_line(capsys, "fusedrnn charlm fit")
    (tmp_path / "empty.txt").write_text("")
    assert cli.main(["charlm", "validate", "--data.path", str(tmp_path / "empty.txt"), *QUIET]) == 2
    assert "is empty" in one_error_line(capsys, "fusedrnn charlm validate")
    sides = {f"--data.{split}_{side}": str(tmp_path / f"{split}.{side}") for split in ("train", "val")
             for side in ("src", "tgt")}
    assert cli.main(["seq2seq", "fit", *[a for kv in sides.items() for a in kv], *QUIET]) == 2
    assert "does not exist" in one_error_line(capsys, "fusedrnn seq2seq fit")


def test_a_bad_setting_is_one_line(capsys, files):
    args = ["ner", "fit", "--data.train_path", files["good"], "--data.val_path", files["good"], *QUIET,
            "--model.decoder", "viterbi"]
    assert cli.main(args) == 2
    assert "decoder must be 'crf' or 'softmax'" in one_error_line(capsys, "fusedrnn ner fit")


def test_debug_switch_gives_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cli.main(["charlm", "fit", "--data.path", str(tmp_path / "none.txt"), *QUIET])


def test_bench_errors_are_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench", "--grid", "nosuch"])
    assert stop.value.code == 2
    assert "invalid choice: 'nosuch'" in one_error_line(capsys, "fusedrnn bench")
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench", "--providers", "nosuchprovider"])
    assert "unknown provider 'nosuchprovider'" in one_error_line(capsys, "fusedrnn bench")
    (tmp_path / "file").write_text("")
    assert cli.main(["bench", "--dry-run", "--out", str(tmp_path / "file" / "sub")]) == 2
    assert "--out" in one_error_line(capsys, "fusedrnn bench")


def test_console_command_prints_one_line(tmp_path):
    """The installed entry point's path (python -m fusedrnn.cli): the whole stderr of a missing data file."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(DEBUG_ENV, None)
    done = subprocess.run([sys.executable, "-m", "fusedrnn.cli", "ner", "fit", "--data.train_path",
                           str(tmp_path / "none.txt"), "--data.val_path", "x", "--seed_everything", "1", *QUIET],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[-1].startswith("fusedrnn ner fit: error: CoNLL file") and "Traceback" not in done.stderr
    assert len(lines) <= 2, done.stderr  # at most Lightning's "Seed set to 1" before it
