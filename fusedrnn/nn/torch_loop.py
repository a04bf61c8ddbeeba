"""One direction of one layer as a loop of torch ops over time, batched over rows: how a fused layer runs
a regulariser that torch's own RNN implementations (cuDNN, oneDNN) cannot run (recurrent dropout, zoneout) when
its backend is torch's (`backend="torch"`, or "auto" on CPU tensors), and layer norm.

Per-row lengths by masking (a finished row keeps its state, its outputs are zero); the reverse direction
reads each row's own times, from its last element back. The input side of every step is one GEMM over the
whole sequence before the loop (`input_preactivations`); each step is the cell's `reference_update`.
"""

import torch

from fusedrnn.cells import cell, input_preactivations


def direction(mode: str, x: torch.Tensor, weights: tuple, state: tuple, lengths: torch.Tensor | None,
              reverse: bool, recurrent_mask: torch.Tensor | None,
              zoneout: torch.Tensor | None = None, layer_norm: tuple | None = None) -> tuple[torch.Tensor, tuple]:
    """x (T, B, I); weights (w_ih, w_hh[, b_ih, b_hh]); state: the cell's states, each (B, H); lengths (B,) or
    None; recurrent_mask (B, H) or None: the recurrent product reads h * mask; zoneout: None, (states, T, B, H)
    bool masks at each row's time or (states,) rates (fusedrnn/ops.py's `recurrence`): each state becomes
    a * previous + (1 - a) * the step's new one; layer_norm: the normalisations' parameters (g_x, b_x, g_h, b_h[,
    g_c, b_c]) or None (fusedrnn/nn/layer_norm.py). Returns y (T, B, H) and the final states."""
    update = cell(mode).reference_update
    w_ih, w_hh, *biases = weights
    gx = input_preactivations(x, w_ih, layer_norm)  # (T, B, G*H): one GEMM, not one per step
    T, B = x.shape[:2]
    H = state[0].shape[1]
    lengths = torch.full((B,), T) if lengths is None else lengths
    lengths = lengths.to(device=x.device, dtype=torch.long)
    steps = torch.arange(T, device=x.device)[:, None]  # (T, 1): processing step k, or time t
    active = steps < lengths  # (T, B): row b is inside its sequence at step k
    # The time row b reads at processing step k; the same map takes time t to the step that wrote y[t].
    times = (lengths - 1 - steps).clamp(min=0) if reverse else steps.expand(T, B)
    rows = torch.arange(B, device=x.device)
    # Each step's input pre-activations in processing order, one tensor per step by unbind: its backward is one
    # stack, where indexing gx at every step would add up T gradients of gx's full size.
    gx_steps = (gx[times, rows] if reverse else gx).unbind(0)
    outputs = []
    for k in range(T):
        recurrent = state[0] * recurrent_mask if recurrent_mask is not None else None
        new = update(gx_steps[k], state, w_hh, *biases, recurrent=recurrent, layer_norm=layer_norm)
        if zoneout is not None:
            keep = zoneout.to(x.dtype) if zoneout.dim() == 1 else zoneout[:, times[k], rows].to(x.dtype)
            new = tuple(a * s + (1 - a) * n for a, s, n in zip(keep, state, new))
        keep = active[k][:, None]
        state = tuple(torch.where(keep, n, s) for n, s in zip(new, state))
        outputs.append(torch.where(keep, new[0], 0))
    y = torch.stack(outputs).gather(0, times[..., None].expand(T, B, H))
    return torch.where(active[..., None], y, 0), state
