"""Bad input raises the exception type torch raises for the same mistake, with a clear message,
and leaves the module usable."""

import pytest
import torch
from helpers import GATED_MODES
from torch import nn

import fusedrnn


def states(mode, *shape, dtype=torch.float32, device="cpu"):
    s = [torch.randn(*shape, dtype=dtype, device=device) for _ in range(2 if mode == "LSTM" else 1)]
    return tuple(s) if mode == "LSTM" else s[0]


RNN_MISTAKES = {
    "4d_input": (lambda m: (torch.randn(2, 3, 4, 5), None), ValueError, "Expected input to be 2D or 3D, got 4D"),
    "wrong_input_size": (lambda m: (torch.randn(7, 3, 6), None), RuntimeError, "input.size(-1) must be equal to input_size"),
    "wrong_hx_batch": (lambda m: (torch.randn(7, 3, 5), states(m, 1, 2, 4)), RuntimeError, "Expected hidden"),
    "wrong_hx_size": (lambda m: (torch.randn(7, 3, 5), states(m, 1, 3, 5)), RuntimeError, "Expected hidden"),
    "2d_hx_for_batched": (lambda m: (torch.randn(7, 3, 5), states(m, 3, 4)), RuntimeError, "should also be 3-D"),
    "3d_hx_for_unbatched": (lambda m: (torch.randn(7, 5), states(m, 1, 1, 4)), RuntimeError, "should also be 2-D"),
    "input_dtype": (lambda m: (torch.randn(7, 3, 5, dtype=torch.float64), None), ValueError, "does not match weight dtype"),
    "hx_dtype": (lambda m: (torch.randn(7, 3, 5), states(m, 1, 3, 4, dtype=torch.float64)), RuntimeError, "dtype"),
    "empty_sequence": (lambda m: (torch.randn(0, 3, 5), None), RuntimeError, "sequence length"),
}


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("mistake", list(RNN_MISTAKES))
def test_rnn_bad_input(mode, mistake):
    make, error, message = RNN_MISTAKES[mistake]
    fused = getattr(fusedrnn, mode)(5, 4, backend="triton")
    torch_module = getattr(nn, mode)(5, 4)
    x, hx = make(mode)
    with pytest.raises(error):
        torch_module(x, hx)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        fused(x, hx)
    out, _ = fused(torch.randn(7, 3, 5))  # still usable
    assert bool(out.isfinite().all())


@pytest.mark.parametrize("mode", GATED_MODES)
def test_rnn_device_mismatch(mode):
    fused = getattr(fusedrnn, mode)(5, 4, backend="triton")
    with pytest.raises(RuntimeError, match="not at the same device"):
        fused(torch.randn(7, 3, 5, device="meta"))
    with pytest.raises(RuntimeError, match="Input and hidden tensors are not at the same device"):
        fused(torch.randn(7, 3, 5), states(mode, 1, 3, 4, device="meta"))


CELL_MISTAKES = {
    "3d_input": (lambda m: (torch.randn(2, 3, 5), None), ValueError, "Expected input to be 1D or 2D, got 3D"),
    "3d_hx": (lambda m: (torch.randn(3, 5), states(m, 1, 3, 4)), ValueError, "to be 1D or 2D, got 3D"),
    "wrong_input_size": (lambda m: (torch.randn(3, 6), None), RuntimeError, "input has inconsistent input_size: got 6 expected 5"),
    "wrong_hidden_size": (lambda m: (torch.randn(3, 5), states(m, 3, 3)), RuntimeError, "hidden0 has inconsistent hidden_size: got 3, expected 4"),
    "batch_mismatch": (lambda m: (torch.randn(3, 5), states(m, 2, 4)), RuntimeError, "Input batch size 3 doesn't match hidden0 batch size 2"),
    "input_dtype": (lambda m: (torch.randn(3, 5, dtype=torch.float64), None), RuntimeError, "dtype"),
    "hx_dtype": (lambda m: (torch.randn(3, 5), states(m, 3, 4, dtype=torch.float64)), RuntimeError, "dtype"),
}


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("mistake", list(CELL_MISTAKES))
def test_cell_bad_input(mode, mistake):
    make, error, message = CELL_MISTAKES[mistake]
    fused = getattr(fusedrnn, mode + "Cell")(5, 4, backend="triton")
    torch_cell = getattr(nn, mode + "Cell")(5, 4)
    x, hx = make(mode)
    with pytest.raises(error):
        torch_cell(x, hx)
    with pytest.raises(error, match=message):
        fused(x, hx)


@pytest.mark.parametrize("cls", [fusedrnn.LSTM, fusedrnn.GRU, fusedrnn.LSTMCell, fusedrnn.GRUCell])
def test_constructor_arguments(cls):
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        cls(5, 0)
    with pytest.raises(ValueError, match="backend must be one of"):
        cls(5, 4, backend="cuda")
    if cls in (fusedrnn.LSTM, fusedrnn.GRU):
        with pytest.raises(ValueError, match="dropout should be a number in range"):
            cls(5, 4, dropout=1.5)
        with pytest.raises(ValueError, match="num_layers must be greater than zero"):
            cls(5, 4, num_layers=0)


def test_environment_backend_must_be_valid(monkeypatch):
    monkeypatch.setenv("FUSEDRNN_BACKEND", "gpu")
    with pytest.raises(ValueError, match="FUSEDRNN_BACKEND must be one of"):
        fusedrnn.LSTM(5, 4)(torch.randn(3, 2, 5))
