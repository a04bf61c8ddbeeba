"""fusedrnn's benchmark suite: speed, peak memory and gradient error of the fused LSTM/GRU against cuDNN
(torch.nn), a Python loop over nn.LSTMCell, torch.compile of that loop and other RNN libraries when
installed, side by side in one run. Run it as `fusedrnn bench` or `python -m fusedrnn.bench`
(`--help` lists the options); results go to a CSV, a markdown summary and PNG plots."""


def main(argv: list[str] | None = None) -> int:
    """The `fusedrnn bench` command; returns the exit code."""
    from fusedrnn.bench.command import main as run_command

    return run_command(argv)


__all__ = ["main"]
