"""Triton kernels. Imported lazily by the modules, so that TRITON_INTERPRET set by a user or a test
before the first forward still takes effect."""

from fusedrnn._backend import FUSEDSTEP


def cell_kernels(mode: str):
    """The stepwise kernels of a cell type, "LSTM" or "GRU"."""
    if mode == "LSTM":
        from fusedrnn.kernels.lstm import LSTM_KERNELS

        return LSTM_KERNELS
    if mode == "GRU":
        from fusedrnn.kernels.gru import GRU_KERNELS

        return GRU_KERNELS
    raise ValueError(f"no fused kernels for mode {mode!r}")


def recurrence(kernels, gx, w_hh, b_hh, initial, lengths, reverse, strategy: str = "triton", allow_tf32=False):
    """`fusedrnn.kernels.stepwise.recurrence` for a Triton backend value ("triton": the stepwise
    strategy; "triton-fusedstep": the GEMM inside the step kernel), imported on first use."""
    from fusedrnn.kernels.stepwise import recurrence as stepwise_recurrence

    gemm_in_kernel = strategy == FUSEDSTEP
    return stepwise_recurrence(kernels, gx, w_hh, b_hh, initial, lengths, reverse, gemm_in_kernel, allow_tf32)
