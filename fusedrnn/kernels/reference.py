"""Plain PyTorch reference of the recurrences, written for clarity, in any dtype (float64 for tests).

It loops over time with per-row lengths: a finished row keeps its state and outputs zeros, and the
reverse direction starts at each row's own last step. It shares no code with the Triton path.
"""

import torch


def lstm_cell(x, state, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step. x: (B, I); state: (h, c), each (B, H). Returns (h', c')."""
    h, c = state
    gates = x @ w_ih.t() + h @ w_hh.t()
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_cell(x, state, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step. x: (B, I); state: (h,), (B, H). Returns (h',)."""
    (h,) = state
    gx = x @ w_ih.t()
    gh = h @ w_hh.t()
    if b_ih is not None:
        gx, gh = gx + b_ih, gh + b_hh
    x_r, x_z, x_n = gx.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


CELLS = {"LSTM": lstm_cell, "GRU": gru_cell}


def rnn_direction(mode, x, state, weights, lengths=None, reverse=False):
    """One direction of one layer. x: (T, B, I); state: tuple of (B, H); weights: (w_ih, w_hh[, b_ih, b_hh]).

    Returns y (T, B, H) and the final state tuple.
    """
    cell = CELLS[mode]
    T, B = x.shape[:2]
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.cpu().long()
    H = state[0].shape[1]
    rows_y, rows_state = [], []
    for b in range(B):
        n = int(lengths[b])
        times = range(n - 1, -1, -1) if reverse else range(n)
        row = tuple(s[b : b + 1] for s in state)
        y_row = [x.new_zeros(1, H) for _ in range(T)]
        for t in times:
            row = cell(x[t, b : b + 1], row, *weights)
            y_row[t] = row[0]
        rows_y.append(torch.cat(y_row))
        rows_state.append(row)
    y = torch.stack(rows_y, dim=1)
    final = tuple(torch.cat([r[k] for r in rows_state]) for k in range(len(state)))
    return y, final


def rnn(mode, x, initial, layer_weights, bidirectional=False, lengths=None, dropout=0.0):
    """A stack of layers, with torch's inter-layer dropout when dropout > 0.

    x: (T, B, I); initial: tuple of (L * D, B, H) tensors; layer_weights[k][d]: the weights of layer k,
    direction d. Returns y (T, B, D * H) and the final states.
    """
    directions = 2 if bidirectional else 1
    finals = [[] for _ in initial]
    for k, per_direction in enumerate(layer_weights):
        outs = []
        for d in range(directions):
            state = tuple(s[k * directions + d] for s in initial)
            y, state = rnn_direction(mode, x, state, per_direction[d], lengths, reverse=d == 1)
            outs.append(y)
            for acc, s in zip(finals, state):
                acc.append(s)
        x = torch.cat(outs, dim=2)
        if dropout and k < len(layer_weights) - 1:
            x = torch.nn.functional.dropout(x, dropout, training=True)
    return x, tuple(torch.stack(f) for f in finals)


def module_weights(module, dtype=None):
    """Weights of a torch-style RNN module as rnn() wants them, optionally cast (e.g. to float64)."""
    directions = 2 if module.bidirectional else 1
    layers = []
    for k in range(module.num_layers):
        per_direction = []
        for d in range(directions):
            suffix = f"l{k}" + ("_reverse" if d else "")
            names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if module.bias else [])
            per_direction.append(tuple(_cast(getattr(module, f"{n}_{suffix}"), dtype) for n in names))
        layers.append(per_direction)
    return layers


def _cast(t, dtype):
    return t if dtype is None else t.to(dtype)
