"""The float64 reference itself agrees with torch.nn, so it can judge the kernels."""

import pytest
import torch
from helpers import GATED_MODES, canonical, make_input, random_like_module, reference_forward
from torch import nn

from fusedrnn.cells import cell as registered_cell
from fusedrnn.testing import assert_close


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_reference_matches_torch(mode, lengths):
    torch.manual_seed(0)
    module = random_like_module(getattr(nn, mode)(3, 6, num_layers=2, bidirectional=True, dtype=torch.float64))
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    h0 = torch.randn(4, 3, 6, dtype=torch.float64)
    hx = (h0, torch.randn_like(h0)) if mode == "LSTM" else h0
    inp = make_input(x, lengths=lengths)
    for got, want in zip(canonical(reference_forward(module, inp, hx)), canonical(module(inp, hx))):
        assert_close(got, want)


@pytest.mark.parametrize("mode", GATED_MODES)
def test_reference_cells_match_torch(mode):
    torch.manual_seed(0)
    cell = random_like_module(getattr(nn, mode + "Cell")(3, 6, dtype=torch.float64))
    x = torch.randn(4, 3, dtype=torch.float64)
    state = tuple(torch.randn(4, 6, dtype=torch.float64) for _ in range(2 if mode == "LSTM" else 1))
    got = registered_cell(mode).reference_step(x, state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    want = cell(x, state if mode == "LSTM" else state[0])
    for g, w in zip(got, want if mode == "LSTM" else (want,)):
        assert_close(g, w)
