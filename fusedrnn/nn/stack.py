"""The fused forward of a torch-style RNN module, shared by every cell (LSTM, GRU, Elman RNN).

It mirrors `torch.nn.LSTM.forward` / `nn.GRU.forward` / `nn.RNN.forward`: the same input layouts (batched or not,
batch_first, PackedSequence sorted or not), the same checks and messages (torch's own methods), the same
outputs. Inside, every layout becomes a time-major padded (T, B, I) tensor plus per-row lengths, and
each layer and direction is one input-projection GEMM followed by the fused recurrence. An LSTM with
proj_size > 0 passes each direction's weight_hr to the recurrence, which projects h (fusedrnn/ops.py).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from fusedrnn.cells import REGISTRY
from fusedrnn.nn import torch_loop
from fusedrnn.nn.autocast import input_projection
from fusedrnn.nn.checks import check_devices_and_dtypes
from fusedrnn.ops import recurrence


def _as_tuple(hx, has_cell_state: bool):
    if hx is None:
        return None
    return tuple(hx) if has_cell_state else (hx,)


def _check_state_dims(has_cell_state: bool, states, batched: bool) -> None:
    want = 3 if batched else 2
    if all(s.dim() == want for s in states):
        return
    kind = "batched 3-D" if batched else "unbatched 2-D"
    if has_cell_state:
        got = ", ".join(f"{s.dim()}-D" for s in states)
        raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got ({got}) tensors")
    raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got {states[0].dim()}-D tensor")


def fused_rnn_forward(rnn: nn.RNNBase, input, hx=None, strategy: str = "triton"):
    """Forward of an nn.LSTM / nn.GRU / nn.RNN (or subclass) on the fused kernels; returns what torch returns."""
    mode = rnn.mode
    has_cell_state = REGISTRY[mode].states == 2
    states = _as_tuple(hx, has_cell_state)
    packed = isinstance(input, PackedSequence)
    batch_dim = 0 if rnn.batch_first else 1
    if packed:
        data, batch_sizes, sorted_indices, unsorted_indices = input
        _check(rnn, data, states, batch_sizes)
        if states is not None and sorted_indices is not None:
            states = tuple(s.index_select(1, sorted_indices) for s in states)
        x, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))
        batched = True
    else:
        if input.dim() not in (2, 3):
            name = REGISTRY[mode].name
            tensor = " tensor" if name == "RNN" else ""  # torch's wording differs by class
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D{tensor} instead")
        batched = input.dim() == 3
        if not batched:
            input = input.unsqueeze(batch_dim)
        if states is not None:
            _check_state_dims(has_cell_state, states, batched)
            if not batched:
                states = tuple(s.unsqueeze(1) for s in states)
        _check(rnn, input, states, None)
        x = input.transpose(0, 1) if rnn.batch_first else input
        lengths = None
    if x.size(0) == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    check_devices_and_dtypes(x, states or (), rnn.weight_ih_l0)

    y, finals = run_layers(rnn, x, states, lengths, strategy, unsorted_indices if packed else None)

    if packed:
        data_out = pack_padded_sequence(y, lengths, enforce_sorted=True).data
        output = PackedSequence(data_out, batch_sizes, sorted_indices, unsorted_indices)
        if unsorted_indices is not None:
            finals = tuple(s.index_select(1, unsorted_indices) for s in finals)
    else:
        output = y.transpose(0, 1) if rnn.batch_first else y
        if not batched:
            output = output.squeeze(batch_dim)
            finals = tuple(s.squeeze(1) for s in finals)
    return output, (finals if has_cell_state else finals[0])


def _check(rnn: nn.RNNBase, input, states, batch_sizes) -> None:
    """torch's own checks, so the exception types and messages are torch's."""
    if states is None:
        rnn.check_input(input, batch_sizes)
    else:
        rnn.check_forward_args(input, states if len(states) > 1 else states[0], batch_sizes)


def run_layers(rnn: nn.RNNBase, x: torch.Tensor, states, lengths: torch.Tensor | None, strategy: str = "triton",
               row_order: torch.Tensor | None = None):
    """All layers and directions of `rnn` over padded time-major x (T, B, I) with per-row lengths
    (CPU int64, or None), by the Triton `strategy` (a backend value), or with "torch" by a loop of torch ops
    (fusedrnn/nn/torch_loop.py: a regularised layer on torch's backend). Returns y (T, B, D * H) and the
    final states, each (L * D, B, H); with an LSTM's proj_size P > 0, y is (T, B, D * P) and h_n
    (L * D, B, P). In training, each direction draws its regularisers' masks in the order of
    fusedrnn/nn/regularizers.py (zoneout at evaluation: its rates). The module's recurrent_grad_clip and
    gradient-flow recorder (fusedrnn/gradient_flow.py) go to each recurrence; row_order puts the recorded rows
    back in the caller's order (a packed batch)."""
    T = x.size(0)
    clip = getattr(rnn, "recurrent_grad_clip", None)
    recorder, name = getattr(rnn, "_gradient_flow", None) or (None, "")
    if recorder is not None:
        all_lengths = lengths if lengths is not None else torch.full((x.size(1),), T)
    directions = 2 if rnn.bidirectional else 1
    n_states = REGISTRY[rnn.mode].states
    if lengths is not None:
        lengths = None if bool((lengths == T).all()) else lengths.to(x.device, torch.int32)
    finals = [[] for _ in range(n_states)]
    layer_input = x
    for layer in range(rnn.num_layers):
        outputs = []
        for d in range(directions):
            suffix = f"l{layer}" + ("_reverse" if d else "")
            b_ih = getattr(rnn, f"bias_ih_{suffix}") if rnn.bias else None
            b_hh = getattr(rnn, f"bias_hh_{suffix}") if rnn.bias else None
            w_ih = getattr(rnn, f"weight_ih_{suffix}")
            index = layer * directions + d
            initial = tuple(s[index] for s in states) if states is not None else (None,) * n_states
            w_hh = rnn.recurrent_weight(getattr(rnn, f"weight_hh_{suffix}"))  # weight_drop's mask in training
            mask = rnn.recurrent_mask(x.size(1), rnn.hidden_size, x.device)
            zoneout = rnn.zoneout_masks(T, x.size(1), rnn.hidden_size, x.device)  # or its rates at eval
            norms = rnn.layer_norm_parameters(suffix) if getattr(rnn, "layer_norm", False) else None
            if strategy == "torch":
                if clip is not None or recorder is not None:
                    raise ValueError("gradient clipping or recording through time runs in the fused kernels only")
                zeros = x.new_zeros(x.size(1), rnn.hidden_size)
                initial = tuple(s if s is not None else zeros for s in initial)
                weights = (w_ih, w_hh, b_ih, b_hh) if rnn.bias else (w_ih, w_hh)
                y, final = torch_loop.direction(rnn.mode, layer_input, weights, initial, lengths, d == 1, mask,
                                                zoneout, norms)
            else:
                w_hr = getattr(rnn, f"weight_hr_{suffix}") if getattr(rnn, "proj_size", 0) else None
                if norms is not None:
                    gx, b_hh, norms = _layer_normed(layer_input, w_ih, b_ih, b_hh, norms, rnn.mode)
                else:
                    gx = input_projection(layer_input, w_ih, b_ih, rnn.mode, "sequence")
                if w_hr is not None and x.device.type == "cpu":
                    # On the CPU nn.LSTM with projections runs torch's default implementation, not oneDNN's
                    # layer: under autocast its GEMMs (hence h and the output) are in autocast's dtype, c in
                    # the input's.
                    gx = gx.to(x.dtype)
                flow_id = recorder.open(name, layer, d, all_lengths, row_order) if recorder is not None else 0
                # As nn.LSTM/GRU on cuDNN: float32 recurrent products may use TF32 when cudnn allows it.
                y, *final = recurrence(rnn.mode, gx, w_hh, b_hh, initial, lengths, d == 1, strategy,
                                       allow_tf32=torch.backends.cudnn.allow_tf32, w_hr=w_hr,
                                       recurrent_grad_clip=clip, flow_id=flow_id, recurrent_mask=mask,
                                       zoneout=zoneout, layer_norm=norms)
            outputs.append(y)
            for acc, s in zip(finals, final):
                acc.append(s)
        layer_input = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
        if rnn.dropout and rnn.training and layer < rnn.num_layers - 1:
            layer_input = F.dropout(layer_input, rnn.dropout, training=True)
    return layer_input, tuple(torch.stack(f) for f in finals)


def _layer_normed(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None,
                  norms: tuple, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the recurrence takes with layer_norm (fusedrnn/nn/layer_norm.py): gx = LN(x W_ih^T) + b_ih for every
    step at once (autograd differentiates it), the bias added after the recurrent normalisation (b_hh + its
    beta), and the recurrent normalisation's other parameters concatenated (gamma_h[, gamma_c, beta_c])."""
    from fusedrnn.cells.layer_norm import EPS  # defines kernels: on first use, not with `import fusedrnn`

    g_x, b_x, g_h, b_h, *cell_state = norms
    raw = input_projection(x, w_ih, None, mode, "sequence")
    gx = F.layer_norm(raw, (raw.shape[-1],), g_x, b_x, eps=EPS).to(raw.dtype)
    if b_ih is not None:
        gx = gx + b_ih.to(gx.dtype)
    return gx, b_h + b_hh if b_hh is not None else b_h, torch.cat([g_h, *cell_state])
