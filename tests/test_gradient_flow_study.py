"""The gradient-flow study (`fusedrnn study gradient-flow`) at a tiny size: it trains every cell at two
lengths, records the gradient flow in the fused kernels and writes its table, CSV and figure."""

import csv

from fusedrnn import cli


def test_study_runs_tiny(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["study", "gradient-flow", "--lengths", "4,7", "--steps", "3", "--hidden", "5", "--batch", "4",
            "--out", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    for label in ("RNN (tanh)", "LSTM", "GRU"):
        assert f"{label}, trained" in printed
    rows = list(csv.DictReader(open(out / "gradient_flow.csv")))
    accuracy = [r for r in rows if r["kind"] == "accuracy"]
    assert {(r["cell"], r["length_or_when"]) for r in accuracy} == {
        (c, n) for c in ("RNN_TANH", "LSTM", "GRU") for n in ("4", "7")}
    # Relative to distance 0 every profile starts at 1 and covers the 7 steps of the longest length.
    profile = [r for r in rows if r["kind"] == "relative_grad_norm" and r["cell"] == "LSTM" and
               r["length_or_when"] == "init"]
    assert [int(r["x"]) for r in profile] == list(range(7)) and float(profile[0]["value"]) == 1.0
    assert (out / "gradient_flow.png").stat().st_size > 10_000


def test_unknown_study(capsys):
    assert cli.main(["study", "nothing"]) == 2
    assert "unknown study 'nothing'" in capsys.readouterr().err
