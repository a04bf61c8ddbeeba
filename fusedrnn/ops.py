"""The recurrence and the cell step as torch.library custom ops, so that torch.compile, torch.export and AOT
graphs hold them.

`fusedrnn::recurrence` runs one direction of one layer over a projected sequence by a Triton strategy;
`fusedrnn::recurrence_backward` is its gradient. `fusedrnn::cell_step` runs one step of a cell (both
products and the pointwise math) in one launch, `fusedrnn::cell_step_backward` its gradient. Their
implementations (fusedrnn/strategies/driver.py, single_step.py) are imported on first call: Triton decides
whether a kernel runs in its interpreter (TRITON_INTERPRET) when the kernel is defined, so `import fusedrnn`
must not define kernels. The fake implementations give the compilers shapes and dtypes without running anything.

An LSTM's projection (proj_size > 0): the ops take W_hr (w_hr) and run the recurrence on the projected state
but return the unprojected outputs h_raw = o * tanh(c) (y and h_n, of width H); `recurrence` projects them
with one GEMM each outside the ops, so that autograd gives that GEMM's gradients (dW_hr's share of the
outputs, and dy @ W_hr for the ops' backward).
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import forward_ad

from fusedrnn.cells import REGISTRY, cell

NO_FORWARD_AD = (
    "fusedrnn's fused kernels have no forward-mode AD (a jvp through LSTM/GRU/RNN); use backend='torch' for these "
    "modules"
)
NO_DOUBLE_BACKWARD = (
    "fusedrnn's fused kernels have no double backward (a gradient of a gradient through LSTM/GRU); use "
    "backend='torch' for these modules (on CUDA also with torch.backends.cudnn.flags(enabled=False) around the "
    "forward: cuDNN's RNNs have no double backward either)"
)


def _recurrence_impl(mode: str, strategy: str, gx: Tensor, w_hh: Tensor, b_hh: Tensor | None, h0: Tensor | None,
                     c0: Tensor | None, lengths: Tensor | None, reverse: bool, store_acts: bool,
                     allow_tf32: bool, w_hr: Tensor | None = None, flow_id: int = 0, clip_mode: str = "",
                     clip: float = 0.0, recurrent_mask: Tensor | None = None, zoneout: Tensor | None = None,
                     layer_norm: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(y, h_n, c_n, acts); c_n is empty for a cell without a cell state, acts unless store_acts. With w_hr
    (P, H), y and h_n are unprojected (width H) while w_hh is (4H, P) and h0 (B, P). flow_id, clip_mode and
    clip are for the backward only (fusedrnn/gradient_flow.py); the calls that leave them out are the default
    path's, whose graphs they do not change. With recurrent_mask (B, H), each step's recurrent product reads
    h_{t-1} * recurrent_mask. zoneout, layer_norm: see `recurrence`."""
    from fusedrnn.strategies import driver

    return driver.forward(mode, strategy, gx, w_hh, b_hh, h0, c0, lengths, reverse, store_acts, allow_tf32, w_hr,
                          recurrent_mask, zoneout, layer_norm)


recurrence_op = torch.library.custom_op("fusedrnn::recurrence", _recurrence_impl, mutates_args=())


@recurrence_op.register_fake
def _(mode, strategy, gx, w_hh, b_hh, h0, c0, lengths, reverse, store_acts, allow_tf32, w_hr=None, flow_id=0,
      clip_mode="", clip=0.0, recurrent_mask=None, zoneout=None, layer_norm=None):
    spec = cell(mode)
    T, B, _ = gx.shape
    H = w_hh.shape[0] // spec.gates
    c_n = gx.new_empty(B, H) if spec.has_cell_state else gx.new_empty(0)
    saved = spec.saved(zoneout is not None) + (spec.gates if layer_norm is not None else 0)
    acts = gx.new_empty(T, B, saved * H) if store_acts else gx.new_empty(0)
    return gx.new_empty(T, B, H), gx.new_empty(B, H), c_n, acts


def _recurrence_backward_impl(mode: str, strategy: str, dy: Tensor, dh: Tensor, dc: Tensor, acts: Tensor, y: Tensor,
                              w_hh: Tensor, h0: Tensor | None, c0: Tensor | None, lengths: Tensor | None, reverse: bool,
                              allow_tf32: bool, w_hh_grad: bool, w_hr: Tensor | None = None,
                              w_hr_grad: bool = False, record_flow: bool = False, clip_mode: str = "",
                              clip: float = 0.0, recurrent_mask: Tensor | None = None, zoneout: Tensor | None = None,
                              layer_norm: Tensor | None = None,
                              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dgx, d_w_hh, d_b_hh, d_h0, d_c0, d_w_hr, flow, d_layer_norm); d_c0 is empty for a cell without a cell
    state, d_w_hh unless w_hh_grad, d_w_hr unless w_hr is given and w_hr_grad (the recurrence's share of W_hr's
    gradient), flow unless record_flow (the norms of dL/dh_t, and dL/dc_t, per row: (states, T, B)),
    d_layer_norm unless layer_norm is given."""
    from fusedrnn.strategies import driver

    return driver.backward(mode, strategy, dy, dh, dc, acts, y, w_hh, h0, c0, lengths, reverse, allow_tf32, w_hh_grad,
                           w_hr, w_hr_grad, record_flow, clip_mode, clip, recurrent_mask, zoneout, layer_norm)


recurrence_backward_op = torch.library.custom_op("fusedrnn::recurrence_backward", _recurrence_backward_impl,
                                                 mutates_args=())


@recurrence_backward_op.register_fake
def _(mode, strategy, dy, dh, dc, acts, y, w_hh, h0, c0, lengths, reverse, allow_tf32, w_hh_grad, w_hr=None,
      w_hr_grad=False, record_flow=False, clip_mode="", clip=0.0, recurrent_mask=None, zoneout=None, layer_norm=None):
    T, B, H = y.shape
    compute = torch.float64 if y.dtype == torch.float64 else torch.float32
    flow = y.new_empty(cell(mode).states, T, B, dtype=compute) if record_flow else y.new_empty(0)
    d_w_hh = y.new_empty(w_hh.shape) if w_hh_grad else y.new_empty(0)
    d_c0 = y.new_empty(B, H) if cell(mode).has_cell_state else y.new_empty(0)
    d_w_hr = y.new_empty(w_hr.shape) if w_hr is not None and w_hr_grad else y.new_empty(0)
    d_layer_norm = y.new_empty(layer_norm.shape) if layer_norm is not None else y.new_empty(0)
    return (y.new_empty(T, B, w_hh.shape[0]), d_w_hh, y.new_empty(w_hh.shape[0]), y.new_empty(B, w_hh.shape[1]),
            d_c0, d_w_hr, flow, d_layer_norm)


# The trailing arguments of fusedrnn::recurrence that a call may leave out, with their defaults.
_OPTIONAL = (None, 0, "", 0.0, None, None, None)  # w_hr, flow_id, clip_mode, clip, recurrent_mask, zoneout, layer_norm
# fusedrnn::recurrence_backward's, after w_hr_grad: record_flow, clip_mode, clip, recurrent_mask, zoneout, layer_norm
_BACKWARD_OPTIONAL = (False, "", 0.0, None, None, None)


def _given(values: tuple, defaults: tuple) -> tuple:
    """Optional trailing arguments without the defaults they end with: a call leaves out what it does not use, so
    the default path's calls (and graphs) hold none of them."""
    n = len(values)
    while n and (values[n - 1] is None if defaults[n - 1] is None else values[n - 1] == defaults[n - 1]):
        n -= 1
    return values[:n]


def _detached(t: Tensor | None) -> Tensor | None:
    return t.detach() if t is not None else None


def _setup_context(ctx, inputs, output) -> None:
    (mode, strategy, _, w_hh, _, h0, c0, lengths, reverse, _, allow_tf32, w_hr, flow_id, clip_mode,
     clip, recurrent_mask, zoneout, layer_norm) = (*inputs, *_OPTIONAL[len(inputs) - 11:])
    y, _, _, acts = output
    ctx.save_for_backward(acts, y, w_hh, h0, c0, lengths, w_hr, recurrent_mask, zoneout, layer_norm)
    ctx.options = mode, strategy, reverse, allow_tf32
    ctx.flow = flow_id, clip_mode, clip
    ctx.mark_non_differentiable(acts)
    ctx.set_materialize_grads(False)  # a zero gradient for acts would cost as much memory as acts


def _backward(ctx, dy, dh, dc, _):
    acts, y, w_hh, h0, c0, lengths, w_hr, recurrent_mask, zoneout, layer_norm = ctx.saved_tensors
    dy = dy if dy is not None else torch.zeros_like(y)
    dh = dh if dh is not None else y.new_zeros(y.shape[1:])
    dc = dc if dc is not None else torch.zeros_like(dh)  # read only for a cell state, which is (B, H)
    mode, strategy, reverse, allow_tf32 = ctx.options
    # By argument: mode, strategy, gx, w_hh, b_hh, h0, c0, lengths, ..., w_hr, ..., zoneout. A call may
    # leave out the last ones (their defaults), and then AOT's autograd asks for the arguments given only.
    given = len(ctx.needs_input_grad)
    needs = (*ctx.needs_input_grad, False)[:12]
    flow_id, clip_mode, clip = ctx.flow
    extra = _given((flow_id != 0, clip_mode, clip, recurrent_mask, zoneout, layer_norm), _BACKWARD_OPTIONAL)
    *grads, flow, d_layer_norm = _recurrence_backward(mode, strategy, dy, dh, dc, acts, y, w_hh, h0, c0, lengths,
                                                      reverse, allow_tf32, needs[3], w_hr, needs[11], *extra)
    if flow_id:
        from fusedrnn import gradient_flow

        gradient_flow.deliver(flow_id, flow)
    d_gx, d_w_hh, d_b_hh, d_h0, d_c0, d_w_hr = (
        g if needed else None for g, needed in zip(grads, (*needs[2:7], needs[11])))
    d_layer_norm = d_layer_norm if given > 17 and ctx.needs_input_grad[17] else None
    return (None, None, d_gx, d_w_hh, d_b_hh, d_h0, d_c0, None, None, None, None, d_w_hr, None, None, None,
            None, None, d_layer_norm)[:given]


def _save_nothing(ctx, inputs, output) -> None:
    pass


def _no_double_backward(ctx, *grads):
    raise RuntimeError(NO_DOUBLE_BACKWARD)


def _eager_function(name: str, impl, backward, setup_context) -> type:
    """An autograd.Function running impl, in the style whose forward takes ctx: Function.apply binds the
    arguments of a forward with a separate setup_context through inspect.signature (tens of us a call)."""

    def forward(ctx, *args):
        output = impl(*args)
        setup_context(ctx, args, output)
        return output

    return type(name, (torch.autograd.Function,), dict(forward=staticmethod(forward), backward=staticmethod(backward)))


class _Differentiable:
    """What the wrappers call a custom op by, with its autograd registered (backward, setup_context).

    A call goes through the op, so that compilers, tracers, tensor subclasses and dispatch modes see it, only
    where one of them is looking. On plain tensors in eager mode the op's round trip through the dispatcher buys
    nothing and costs host time (about half of a cell step's, benchmarks/NOTES.md), so there `impl`, the op's own
    implementation, runs: directly where no gradient can be recorded, else inside an autograd.Function with the
    same setup_context and backward. Under torch.func transforms an autograd.Function that calls the op runs:
    the transforms refuse the one that register_autograd generates, which lacks a setup_context staticmethod
    (pytorch/pytorch#168393)."""

    def __init__(self, op, impl, backward, setup_context):
        op.register_autograd(backward, setup_context=setup_context)
        self.op, self.impl = op, impl
        self.transformable = type(f"{op._name}_function", (torch.autograd.Function,), dict(
            forward=staticmethod(lambda *args: op(*args)), setup_context=staticmethod(setup_context),
            backward=staticmethod(backward), generate_vmap_rule=True))
        self.eager = _eager_function(f"{op._name}_eager", impl, backward, setup_context)

    def __call__(self, *args):
        if not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active():
            return self.transformable.apply(*args)
        tensors = [a for a in args if isinstance(a, Tensor)]
        if not _plain_eager(tensors):
            return self.op(*args)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return self.eager.apply(*args)
        return self.impl(*args)


_recurrence = _Differentiable(recurrence_op, _recurrence_impl, _backward, _setup_context)
_recurrence_backward = _Differentiable(recurrence_backward_op, _recurrence_backward_impl, _no_double_backward,
                                       _save_nothing)


def recurrence(
    mode: str,
    gx: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    initial: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
    strategy: str = "triton",
    allow_tf32: bool = False,
    w_hr: Tensor | None = None,
    recurrent_grad_clip: tuple[str, float] | None = None,
    flow_id: int = 0,
    recurrent_mask: Tensor | None = None,
    zoneout: Tensor | None = None,
    layer_norm: Tensor | None = None,
) -> tuple[Tensor, ...]:
    """Differentiable recurrence of one direction of a `mode` cell ("LSTM", "GRU") by a Triton `strategy`
    (its backend value). Returns (y, *final_states).

    gx: (T, B, G*H) input projection x @ W_ih^T + b_ih; w_hh: (G*H, H); b_hh: (G*H,) or None; initial: the
    cell's states, each (B, H) or None (zeros); lengths: (B,) per-row lengths or None when every row has T
    steps; y is zero past each row's length. allow_tf32: float32 products of the in-kernel GEMM may use
    TF32 tensor cores (the modules pass torch's flag for their torch counterpart; the stepwise GEMM follows
    torch's matmul flag). Weights and states are cast to gx's dtype (so autocast works).
    w_hr: an LSTM's projection (P, H), as nn.LSTM's weight_hr with proj_size P: then w_hh is (4H, P), h0 and
    h_n are (B, P), c0 and c_n (B, H), y is (T, B, P) (every strategy runs the stepwise pattern then, with
    the projection a cuBLAS GEMM between the step kernels: fusedrnn/strategies/driver.py).
    recurrent_grad_clip: ("value", v) or ("norm", v) clips dL/dh_t at every step of the backward; flow_id:
    where the backward delivers the norms of dL/dh_t (fusedrnn/gradient_flow.py; both off by default).
    recurrent_mask: (B, H) or None; each step's recurrent product reads h_{t-1} * recurrent_mask (variational
    recurrent dropout: one mask per sequence, drawn by the caller; not with w_hr). Not differentiated.
    zoneout (not with w_hr, not differentiated): each step mixes the cell's new states (candidates) with the
    previous ones, state_t = a * state_{t-1} + (1 - a) * candidate_t (h, and an LSTM's c), y and the final
    states being the mixed ones; a is either a (states, T, B, H) bool mask (training: True keeps the previous
    value of that unit of row b at its own time t, as y's index; states 2 for an LSTM: [0] h, [1] c) or a
    (states,) floating tensor of rates (evaluation: the expectation, a = the rate).
    layer_norm (not with w_hr; differentiated): the recurrent pre-activations become
    gamma_h * LN(h_{t-1} W_hh^T) + b_hh (LN over each row's G*H, fusedrnn/cells/layer_norm.py), and an LSTM's
    h_t = o * tanh(gamma_c * LN(c_t) + beta_c); layer_norm is gamma_h (G*H,), then for an LSTM gamma_c and beta_c
    (H each), concatenated. b_hh is then required (pass the usual b_hh plus the normalisation's beta_h); gx is
    used as given (normalise it before, e.g. with F.layer_norm). Every strategy runs whole-row tiles then
    (H <= fusedrnn/strategies/tiles.py's LAYER_NORM_MAX_HIDDEN).

        >>> y, h_n, c_n = recurrence("LSTM", F.linear(x, w_ih, b_ih), w_hh, b_hh, (h0, c0))
    """
    if w_hr is not None and REGISTRY[mode].states != 2:
        raise ValueError(f"a projection (w_hr, proj_size > 0) is an LSTM's; got mode {mode!r}")
    dtype = gx.dtype
    w_hh = w_hh.to(dtype)
    b_hh = b_hh.to(dtype) if b_hh is not None else None
    w_hr = w_hr.to(dtype) if w_hr is not None else None
    h0, c0 = (*(s.to(dtype) if s is not None else None for s in initial), None)[:2]
    if lengths is not None:
        lengths = lengths.to(device=gx.device, dtype=torch.int32)
    # Save activations for backward only when one will run: under no_grad (inference) the op still sees
    # inputs that require grad, so grad mode is read here, outside it.
    store_acts = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (gx, w_hh, b_hh, h0, c0, w_hr, layer_norm))
    _refuse_forward_ad(gx, w_hh, b_hh, h0, c0, w_hr, layer_norm)
    extra = ()  # the default path passes none of the optional arguments
    if zoneout is not None:
        _check_zoneout(zoneout, REGISTRY[mode].states, gx.shape[0], gx.shape[1], w_hh.shape[1])
    if layer_norm is not None:
        _check_layer_norm(layer_norm, b_hh, mode, w_hh.shape[1])
        layer_norm = layer_norm.to(dtype)
    if (flow_id or recurrent_grad_clip is not None or recurrent_mask is not None or zoneout is not None
            or layer_norm is not None):
        from fusedrnn.gradient_flow import check_clip

        if w_hr is not None:
            raise ValueError("recording or clipping the gradient through time, recurrent dropout, zoneout or "
                             "layer_norm is not implemented with a projection (proj_size > 0)")
        if flow_id and torch.compiler.is_compiling():
            raise RuntimeError("fusedrnn.record_gradient_flow does not work under torch.compile: record in eager mode")
        clip_mode, clip = check_clip(recurrent_grad_clip) if recurrent_grad_clip is not None else ("", 0.0)
        extra = _given((flow_id, clip_mode, clip, _detached(recurrent_mask), _detached(zoneout), layer_norm),
                       _OPTIONAL[1:])
    y, h_n, c_n, _ = _recurrence(mode, strategy, gx, w_hh, b_hh, h0, c0, lengths, reverse, store_acts, allow_tf32,
                                 w_hr, *extra)
    if w_hr is not None:
        y, h_n = _project(y, h_n, w_hr, h0, lengths)
    return (y, h_n, c_n)[: 1 + len(initial)]


def _check_zoneout(zoneout: Tensor, states: int, T: int, B: int, H: int) -> None:
    """Zoneout's masks or rates have the shape and dtype `recurrence` documents."""
    if zoneout.dim() == 1:
        if zoneout.shape[0] != states or not zoneout.is_floating_point():
            raise ValueError(f"zoneout rates must be a floating tensor of shape ({states},), got {zoneout.dtype} "
                             f"{tuple(zoneout.shape)}")
    elif zoneout.shape != (states, T, B, H) or zoneout.dtype != torch.bool:
        raise ValueError(f"zoneout masks must be a bool tensor of shape {(states, T, B, H)}, got {zoneout.dtype} "
                         f"{tuple(zoneout.shape)}")


def _check_layer_norm(layer_norm: Tensor, b_hh: Tensor | None, mode: str, H: int) -> None:
    """The recurrent normalisation's parameters have the length `recurrence` documents; b_hh is given."""
    spec = REGISTRY[mode]
    want = (cell(mode).gates + (2 if spec.states == 2 else 0)) * H
    if layer_norm.shape != (want,):
        raise ValueError(f"layer_norm must be gamma_h{', gamma_c, beta_c' if spec.states == 2 else ''} "
                         f"concatenated, of shape ({want},); got {tuple(layer_norm.shape)}")
    if b_hh is None:
        raise ValueError("the recurrence with layer_norm adds b_hh after the normalisation: pass b_hh (the usual "
                         "bias plus the normalisation's beta, or that beta alone without a bias)")


def _project(y: Tensor, h_n: Tensor, w_hr: Tensor, h0: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """The projected outputs from the op's unprojected ones (GEMMs, so under autocast in its dtype, as torch's
    projection). A row of length 0 keeps h0 (its h_raw never existed)."""
    y, h_n = F.linear(y, w_hr), F.linear(h_n, w_hr)
    if lengths is not None:
        kept = h0 if h0 is not None else torch.zeros_like(h_n)
        h_n = torch.where((lengths == 0).unsqueeze(1), kept, h_n)
    return y, h_n


def _cell_step_impl(mode: str, x: Tensor, h: Tensor | None, c: Tensor | None, w_ih: Tensor, w_hh: Tensor,
                    b_ih: Tensor | None, b_hh: Tensor | None, store_acts: bool,
                    allow_tf32: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(h', c', acts); c' is empty for a cell without a cell state, acts unless store_acts (or when the cell
    saves nothing: the Elman cell's backward reads h')."""
    from fusedrnn.strategies import single_step

    return single_step.forward(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, store_acts, allow_tf32)


cell_step_op = torch.library.custom_op("fusedrnn::cell_step", _cell_step_impl, mutates_args=())


@cell_step_op.register_fake
def _(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, store_acts, allow_tf32):
    spec = cell(mode)
    B, H = x.shape[0], w_hh.shape[1]
    c_new = x.new_empty(B, H) if spec.has_cell_state else x.new_empty(0)
    acts = x.new_empty(B, spec.saved_blocks * H) if store_acts and spec.saved_blocks else x.new_empty(0)
    return x.new_empty(B, H), c_new, acts


def _cell_step_backward_impl(mode: str, dh: Tensor | None, dc: Tensor | None, acts: Tensor, h_new: Tensor, x: Tensor,
                             h: Tensor | None, c: Tensor | None, w_ih: Tensor, w_hh: Tensor,
                             needs: list[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh), each empty unless `needs` (by position) asks for it; dh and
    dc also without a state (hx None), dc for a cell without a cell state."""
    from fusedrnn.strategies import single_step

    return single_step.backward(mode, dh, dc, acts, h_new, x, h, c, w_ih, w_hh, needs)


cell_step_backward_op = torch.library.custom_op("fusedrnn::cell_step_backward", _cell_step_backward_impl,
                                                mutates_args=())


@cell_step_backward_op.register_fake
def _(mode, dh, dc, acts, h_new, x, h, c, w_ih, w_hh, needs):
    has = (True, h is not None, c is not None, True, True, True, True)
    shapes = (x.shape, h_new.shape, h_new.shape, w_ih.shape, w_hh.shape, w_hh.shape[:1], w_hh.shape[:1])
    return tuple(x.new_empty(shape) if need and present else x.new_empty(0)
                 for need, present, shape in zip(needs, has, shapes))


def _step_setup_context(ctx, inputs, output) -> None:
    mode, x, h, c, w_ih, w_hh, *_ = inputs
    h_new, _, acts = output
    ctx.save_for_backward(acts, h_new, x, h, c, w_ih, w_hh)
    ctx.mode = mode
    ctx.mark_non_differentiable(acts)
    ctx.set_materialize_grads(False)


def _step_backward(ctx, dh, dc, _):
    acts, h_new, x, h, c, w_ih, w_hh = ctx.saved_tensors
    if dc is not None and dc.numel() == 0:  # c' of a cell without a cell state
        dc = None
    needs = list(ctx.needs_input_grad[1:8])  # x, h, c, w_ih, w_hh, b_ih, b_hh
    grads = _cell_step_backward(ctx.mode, dh, dc, acts, h_new, x, h, c, w_ih, w_hh, needs)
    return (None, *(g if need else None for g, need in zip(grads, needs)), None, None)


_cell_step = _Differentiable(cell_step_op, _cell_step_impl, _step_backward, _step_setup_context)
_cell_step_backward = _Differentiable(cell_step_backward_op, _cell_step_backward_impl, _no_double_backward,
                                      _save_nothing)


def _as(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return t.to(dtype) if t is not None and t.dtype != dtype else t


def cell_step(
    mode: str,
    x: Tensor,
    states: tuple[Tensor, ...] | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    allow_tf32: bool = False,
) -> tuple[Tensor, ...]:
    """Differentiable single step of a `mode` cell ("LSTM", "GRU", "RNN_TANH", "RNN_RELU") in one Triton
    launch (backward: one launch and cuBLAS GEMMs). Returns the new states: (h', c') for an LSTM, else (h',).

    x: (B, I); states: the cell's states, each (B, H), or None (zeros); w_ih: (G*H, I); w_hh: (G*H, H);
    b_ih, b_hh: (G*H,) or both None. allow_tf32: float32 products may use TF32 tensor cores (the cell
    modules pass torch.backends.cuda.matmul.allow_tf32, as nn.LSTMCell's cuBLAS obeys). Weights and states
    are cast to x's dtype (so autocast works); 16-bit types compute in float32, float64 in float64.

        >>> h, c = cell_step("LSTM", x, (h, c), w_ih, w_hh, b_ih, b_hh)
    """
    dtype = x.dtype
    h, c = (*(_as(s, dtype) for s in states), None)[:2] if states is not None else (None, None)
    w_ih, w_hh, b_ih, b_hh = _as(w_ih, dtype), _as(w_hh, dtype), _as(b_ih, dtype), _as(b_hh, dtype)
    # Activations for a backward only when one will run (under no_grad inputs may still require grad).
    store_acts = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, h, c, w_ih, w_hh, b_ih, b_hh))
    _refuse_forward_ad(x, h, c, w_ih, w_hh, b_ih, b_hh)
    h_new, c_new, _ = _cell_step(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, store_acts, allow_tf32)
    return (h_new, c_new) if REGISTRY[mode].states == 2 else (h_new,)


def _refuse_forward_ad(*tensors: Tensor | None) -> None:
    """Forward-mode AD (dual tensors) has no formula through the ops. With grad enabled their autograd says so;
    under no_grad, where forward AD still runs, the ops would drop the tangents without a word: refused."""
    if forward_ad._current_level >= 0 and any(
            t is not None and forward_ad.unpack_dual(t).tangent is not None for t in tensors):
        raise NotImplementedError(NO_FORWARD_AD)


def _plain_eager(tensors: list[Tensor]) -> bool:
    """Whether a call runs eagerly on real data: no compiler, tracer (torch.jit.trace included), tensor
    subclass (fake, functional, distributed), dispatch mode, torch.func transform or forward-mode AD level
    is looking at it, so the op's own dispatch has nothing to do. Nor torch's profiler: its traces name the ops."""
    return (all(type(t) in _PLAIN for t in tensors) and tensors[0].device.type in ("cuda", "cpu")
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and not torch._C._autograd._profiler_enabled()
            and not torch._C._are_functorch_transforms_active() and torch._C._len_torch_dispatch_stack() == 0
            and forward_ad._current_level < 0)  # forward-mode AD works under no_grad too: the op refuses it


_PLAIN = (Tensor, torch.nn.Parameter)
