"""Plain PyTorch reference of the recurrences, written for clarity, in any dtype (float64 for tests).

The per-step math is each cell's `reference_step` (fusedrnn/cells/); this file runs it over time, layers
and directions.

It loops over time with per-row lengths: a finished row keeps its state and outputs zeros, and the
reverse direction starts at each row's own last step. It shares no code with the Triton path.

An LSTM with a projection (nn.LSTM's proj_size P > 0) carries h = W_hr (o * tanh(c)) of width P: the
cell's step runs on it (W_hh is (4H, P)) and its new h is projected here.
"""

import torch

from fusedrnn.cells import cell


def rnn_direction(mode, x, state, weights, lengths=None, reverse=False, step_hook=None, recurrent_mask=None,
                  zoneout=None, layer_norm=None):
    """One direction of one layer. x: (T, B, I); state: tuple of (B, H); weights: (w_ih, w_hh[, b_ih,
    b_hh][, w_hr]), torch's order: an odd count ends with an LSTM's projection w_hr (P, H), and then h in
    state and y have width P. step_hook(b, t, states), when given, is called with the new states (each
    (1, H)) of row b after its step at time t, before anything reads them (to register autograd hooks on
    them: the reference of fusedrnn/gradient_flow.py). recurrent_mask (B, H): every step's recurrent product
    reads h * mask (variational recurrent dropout), the rest of the cell h itself. zoneout: each state after a
    step is a * previous + (1 - a) * the cell's new one (h, and an LSTM's c), with a the (states, T, B, H) mask
    at the row's time t (1 keeps the previous value), or a (states,) tensor of rates (the evaluation form).
    layer_norm: the normalisations' parameters (g_x, b_x, g_h, b_h[, g_c, b_c]) the cell's step takes
    (fusedrnn/nn/layer_norm.py), or None.

    Returns y (T, B, H) (or (T, B, P)) and the final state tuple.
    """
    step = cell(mode).reference_step
    weights, w_hr = (weights[:-1], weights[-1]) if len(weights) % 2 else (weights, None)
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
            recurrent = None if recurrent_mask is None else row[0] * recurrent_mask[b : b + 1]
            previous = row
            row = step(x[t, b : b + 1], row, *weights, recurrent=recurrent, layer_norm=layer_norm)
            if zoneout is not None:
                keep = [(zoneout[q] if zoneout.dim() == 1 else zoneout[q, t, b : b + 1]).to(x.dtype)
                        for q in range(len(row))]
                row = tuple(a * p + (1 - a) * n for a, p, n in zip(keep, previous, row))
            if w_hr is not None:
                row = (row[0] @ w_hr.t(), *row[1:])
            if step_hook is not None:
                step_hook(b, t, row)
            y_row[t] = row[0]
        rows_y.append(torch.cat(y_row))
        rows_state.append(row)
    y = torch.stack(rows_y, dim=1)
    final = tuple(torch.cat([r[k] for r in rows_state]) for k in range(len(state)))
    return y, final


def rnn(mode, x, initial, layer_weights, bidirectional=False, lengths=None, dropout=0.0, step_hook=None,
        recurrent_masks=None, zoneout=None, layer_norm=None):
    """A stack of layers, with torch's inter-layer dropout when dropout > 0. step_hook(layer, direction, b,
    t, states): see rnn_direction. recurrent_masks[k][d], if given: layer k direction d's recurrent-dropout
    mask (see rnn_direction). zoneout[k][d], if given: layer k direction d's zoneout masks or rates (see
    rnn_direction). layer_norm[k][d], if given: layer k direction d's normalisation parameters (see rnn_direction).

    x: (T, B, I); initial: tuple of (L * D, B, H) tensors (h (L * D, B, P) with a projection);
    layer_weights[k][d]: the weights of layer k, direction d (see rnn_direction). Returns y (T, B, D * H)
    (D * P with a projection) and the final states.
    """
    directions = 2 if bidirectional else 1
    finals = [[] for _ in initial]
    for k, per_direction in enumerate(layer_weights):
        outs = []
        for d in range(directions):
            state = tuple(s[k * directions + d] for s in initial)
            hook = None if step_hook is None else lambda b, t, row, k=k, d=d: step_hook(k, d, b, t, row)
            mask = recurrent_masks[k][d] if recurrent_masks is not None else None
            y, state = rnn_direction(mode, x, state, per_direction[d], lengths, reverse=d == 1, step_hook=hook,
                                     recurrent_mask=mask, zoneout=zoneout[k][d] if zoneout is not None else None,
                                     layer_norm=layer_norm[k][d] if layer_norm is not None else None)
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
            names += ["weight_hr"] if getattr(module, "proj_size", 0) else []
            per_direction.append(tuple(_cast(getattr(module, f"{n}_{suffix}"), dtype) for n in names))
        layers.append(per_direction)
    return layers


def _cast(t, dtype):
    return t if dtype is None else t.to(dtype)
