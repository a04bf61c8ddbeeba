"""One direction of one layer over a projected sequence: what every strategy shares.

Written once for every cell and strategy: the cell contributes its step bodies (fusedrnn/cells/), the
strategy decides how the time loop is launched (fusedrnn/strategies/), this file allocates the buffers,
builds the kernels' arguments and does everything that is not sequential. Forward, per step: the cell
takes hg = h @ W_hh^T + b_hh (from a cuBLAS GEMM, or computed in the kernel), reads gx at each row's own
time, updates the state, writes y and saves its activations. Backward runs the steps in reverse: the cell
turns the incoming gradient into gate gradients dgx (and dhg, the part that went through the recurrent
GEMM); dhg_s @ W_hh carries it to the step before (a GEMM after the kernel, or inside the next step).
After the loop, as large GEMMs: dW_hh here, dW_ih, db_ih and dx by autograd through the input
projection that the caller did with F.linear. No atomics in any gradient: results are deterministic.

An LSTM with a projection (proj_size P > 0, w_hr (P, H)) carries h_r = h_raw @ W_hr^T (B, P) between
steps, where h_raw = o * tanh(c) is what the kernels compute and keep in their (B, H) state buffer and
write into y. The projection needs every hidden unit of a step before any unit of the next step can start,
so it runs as a host GEMM between the kernel launches, and with a projection every strategy runs the
stepwise pattern (one launch per step between cuBLAS GEMMs): the fusedstep kernel's in-kernel GEMM reads
an H-wide state, and the persistent kernel would need a second grid barrier per step (after the pointwise
update, before the projection is complete). Forward, per step: h_r = h_raw @ W_hr^T (h0 at the first
step; a finished row's kept h_raw reproduces its kept h_r), hg = h_r @ W_hh^T + b_hh, the kernel. y and
h_n stay unprojected here (y_raw, h_raw_n); fusedrnn/ops.py projects them with autograd. Backward, per
step: dh_r = dG_s @ W_hh (B, P), and what reaches h_raw through the recurrence is dh_r @ W_hr; after the
loop dW_hh = sum_t dG_t^T h_r_{t-1} and this recurrence's share of dW_hr = sum_t dh_r_t^T h_raw_t, each
two large GEMMs.

Layer normalisation (`layer_norm`, the recurrent normalisation's parameters: fusedrnn/cells/layer_norm.py):
the strategies run whole-row tiles (fusedrnn/strategies/tiles.py); the recurrent product is taken without
b_hh (the caller passes b_hh + beta_h, added after the normalisation); the forward saves the raw product too.
The backward writes, beside dgx, the raw product's gradient into its own dhg (what the GEMMs carry back and
dW_hh sums) and per-step per-row contributions to the parameters' gradients, summed after the loop: those are
the bias's gradient and layer_norm's.
"""

import functools
import os

import torch
import triton.language as tl

from fusedrnn._backend import interpreter_enabled
from fusedrnn.cells import cell as cell_for
from fusedrnn.cells import layer_norm as ln_module
from fusedrnn.strategies import strategy as strategy_for
from fusedrnn.strategies import tiles
from fusedrnn.strategies.kernels import backward_kernel, forward_kernel
from fusedrnn.strategies.launch import TimeLoop

# Read once (tests set it before the first call imports this module): a cell step makes several buffers.
POISON = os.environ.get("FUSEDRNN_POISON") == "1"


def new_empty(like: torch.Tensor, *shape: int) -> torch.Tensor:
    """Uninitialised buffer; filled with NaN under FUSEDRNN_POISON=1 (tests), so that an element a kernel
    forgets to write shows up as NaN instead of passing by luck."""
    if POISON:
        return like.new_full(shape, float("nan"))
    return like.new_empty(shape)


def compute_dtype(dtype: torch.dtype) -> tuple[torch.dtype, object]:
    """fp32 arithmetic for every storage type, except float64 stays float64 (for gradcheck)."""
    return (torch.float64, tl.float64) if dtype == torch.float64 else (torch.float32, tl.float32)


# FUSEDRNN_TF32X3=1: where float32 products would take TF32, take three TF32 products each instead ("tf32x3":
# about float32's accuracy, still on tensor cores), for a gradient error below cuDNN's TF32. Opt-in until a GPU
# run has timed it (benchmarks/profile_steps.py --switches).
TF32X3 = os.environ.get("FUSEDRNN_TF32X3", "0") == "1"


def gemm_flags(dtype: torch.dtype, allow_tf32: bool) -> dict:
    """The in-kernel GEMM's products: TF32 tensor cores for float32 when allowed (tf32x3 with TF32X3), else
    exact-rounded; 16-bit operands widened to float32 under the interpreter, whose bfloat16 dot is wrong."""
    tf32 = "tf32x3" if TF32X3 else "tf32"
    return dict(
        DOT_PRECISION=tf32 if dtype == torch.float32 and allow_tf32 else "ieee",
        UPCAST=dtype.itemsize == 2 and interpreter_enabled(),
    )


def _sync_buffer(strategy, device: torch.device) -> torch.Tensor:
    """The grid barrier's counter and flag, zeroed per launch; unread by strategies without a barrier."""
    if strategy.name == "triton-persistent":
        return torch.zeros(2, dtype=torch.int32, device=device)
    return torch.empty(2, dtype=torch.int32, device=device)


def _strategy(name: str, projected: bool):
    """The strategy that runs the time loop: with a projection the stepwise one, whatever was asked (the
    projection is a host GEMM between launches; see the top of this file)."""
    return strategy_for("triton" if projected else name)


def forward(mode: str, strategy_name: str, gx: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None,
            h0: torch.Tensor | None, c0: torch.Tensor | None, lengths: torch.Tensor | None, reverse: bool,
            store_acts: bool, allow_tf32: bool, w_hr: torch.Tensor | None = None,
            recurrent_mask: torch.Tensor | None = None, zoneout: torch.Tensor | None = None,
            layer_norm: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """The forward of `fusedrnn::recurrence` (fusedrnn/ops.py): (y, h_n, c_n, acts). c_n is empty for a cell
    without a cell state, acts (the activations the backward reads) unless store_acts. With w_hr (an LSTM's
    projection, (P, H); then w_hh is (4H, P) and h0 (B, P)) y and h_n are the unprojected h_raw. With
    recurrent_mask m (B, H), every step's recurrent product reads h_{t-1} * m. With zoneout (see _zoneout) each
    new state is mixed with the previous one. Returns no views."""
    projected = w_hr is not None
    cell, strategy = cell_for(mode), _strategy(strategy_name, projected)
    gx, w_hh, b_hh, h0, c0, lengths, w_hr = contiguous(gx, w_hh, b_hh, h0, c0, lengths, w_hr)
    T, B, _ = gx.shape
    H = gx.shape[2] // cell.gates
    dtype, device = gx.dtype, gx.device
    compute, tl_compute = compute_dtype(dtype)
    rmask = _kernel_input("recurrent dropout", recurrent_mask, compute, projected)
    zoneout, zoneout_mode = _zoneout(zoneout, compute, projected)
    ln = _kernel_input("layer_norm", layer_norm, compute, projected)
    if ln is not None and b_hh is None:
        raise ValueError("fusedrnn: the recurrence with layer_norm takes b_hh (b_hh + the normalisation's beta)")
    # The state buffers: two that alternate when other programs read h (the GEMM in the kernel), else one.
    h_bufs = new_empty(gx, 2 if strategy.gemm_in_kernel else 1, B, H)
    # With a projection they hold h_raw, which the kernel reads only for a finished row (its own last
    # h_raw); the recurrent GEMM reads h_r, h0 before the first step.
    h_bufs[0] = h0 if h0 is not None and not projected else 0
    if projected:
        h_r = h0.clone() if h0 is not None else gx.new_zeros(B, w_hr.shape[0])
    c = c0.to(compute, copy=True) if c0 is not None else gx.new_zeros(B, H, dtype=compute)  # unread by a GRU
    y = new_empty(gx, T, B, H)
    # The kernel writes no activations past a row's end, and acts is an output of the op: zeros there.
    new_acts = gx.new_zeros if lengths is not None else functools.partial(new_empty, gx)
    acts = new_acts(T, B, saved_blocks(cell, zoneout_mode != 0, ln is not None) * H) if store_acts else gx.new_empty(0)
    hg = y if strategy.gemm_in_kernel else new_empty(gx, B, cell.gates * H)  # the stepwise GEMM's output
    args = dict(
        gx_ptr=gx, hg_ptr=hg, w_hh_ptr=w_hh, b_hh_ptr=b_hh if b_hh is not None else w_hh, h_ptr=h_bufs,
        h_flip=B * H if strategy.gemm_in_kernel else 0, c_ptr=c, y_ptr=y, acts_ptr=acts if acts.numel() else y,
        lengths_ptr=lengths if lengths is not None else y, rmask_ptr=rmask if rmask is not None else y,
        zoneout_ptr=zoneout if zoneout is not None else y, ln_ptr=ln if ln is not None else y,
        sync_ptr=_sync_buffer(strategy, device), T=T, B=B, H=H,
    )  # stand-ins for absent tensors are never read
    flags = dict(
        CELL_STEP=cell.forward_step, CELL_VARIANT=cell.variant, HAS_LENGTHS=lengths is not None, REVERSE=reverse,
        STORE_ACTS=store_acts, GEMM_IN_KERNEL=strategy.gemm_in_kernel, HAS_BIAS=b_hh is not None and ln is None,
        RECURRENT_MASK=rmask is not None, ZONEOUT=zoneout_mode, COMPUTE=tl_compute, **gemm_flags(dtype, allow_tf32),
        GATES=cell.gates, W_ON_CHIP=0,  # the persistent strategy may set W_ON_CHIP (persistent.py)
        LAYER_NORM=int(ln is not None),  # then the bias comes after the normalisation, in the kernel
    )
    if rmask is not None and not strategy.gemm_in_kernel:  # the stepwise GEMM reads h * m from here
        h_masked, rmask_stored = new_empty(gx, B, H), rmask.to(dtype)

    def host_gemm(k: int) -> None:
        h = h_bufs[0]
        if rmask is not None:
            h = torch.mul(h, rmask_stored, out=h_masked)
        if projected:
            if k:
                torch.mm(h, w_hr.t(), out=h_r)
            h = h_r
        if b_hh is not None and ln is None:
            torch.addmm(b_hh, h, w_hh.t(), out=hg)
        else:
            torch.mm(h, w_hh.t(), out=hg)

    if B:
        gemm = None if strategy.gemm_in_kernel else host_gemm
        strategy.run(TimeLoop(forward_kernel, args, flags, T, B, H, dtype, device, gemm, True))
    h = h_bufs[T % 2 if strategy.gemm_in_kernel else 0].clone()  # a view of the buffer otherwise
    c = c.to(dtype) if cell.has_cell_state else gx.new_empty(0)
    return y, h, c, acts


def backward(mode: str, strategy_name: str, dy: torch.Tensor, dh: torch.Tensor, dc: torch.Tensor,
             acts: torch.Tensor, y: torch.Tensor, w_hh: torch.Tensor, h0: torch.Tensor | None,
             c0: torch.Tensor | None, lengths: torch.Tensor | None, reverse: bool, allow_tf32: bool,
             w_hh_grad: bool, w_hr: torch.Tensor | None = None, w_hr_grad: bool = False, record_flow: bool = False,
             clip_mode: str = "", clip: float = 0.0, recurrent_mask: torch.Tensor | None = None,
             zoneout: torch.Tensor | None = None,
             layer_norm: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """The forward of `fusedrnn::recurrence_backward`: (dgx, d_w_hh, d_b_hh, d_h0, d_c0, d_w_hr, flow, d_layer_norm)
    (d_layer_norm empty unless layer_norm is given) from the
    gradients of y, h_n and c_n (empty for a cell without a cell state, as d_c0) and what the forward saved;
    d_w_hh is empty unless w_hh_grad. With w_hr, y, dy and dh are the unprojected ones (B, H), h0 and d_h0
    are (B, P), and d_w_hr is the recurrence's share of W_hr's gradient (empty unless w_hr_grad).
    record_flow: flow is (states, T, B) ||dL/dh_t|| (and ||dL/dc_t||) per row at each row's own time (zero
    outside its length), else empty. clip_mode "value" or "norm" clips dL/dh_t at `clip` (see
    fusedrnn/gradient_flow.py); "norm" runs the stepwise pattern, its per-row factors a host op per step.
    With the forward's recurrent_mask m, the gradient through each recurrent product is masked by m; with its
    zoneout, each step passes the kept share of dL/dh_t (and dL/dc_t) straight to the previous state."""
    projected = w_hr is not None
    clip_by_norm = clip_mode == "norm"
    cell, strategy = cell_for(mode), _strategy(strategy_name, projected or clip_by_norm)
    dy, dh, dc, acts, y, w_hh, h0, c0, lengths, w_hr = contiguous(
        dy, dh, dc, acts, y, w_hh, h0, c0, lengths, w_hr)
    T, B, H = y.shape
    GH = cell.gates * H
    compute, tl_compute = compute_dtype(y.dtype)
    rmask = _kernel_input("recurrent dropout", recurrent_mask, compute, projected)
    zoneout, zoneout_mode = _zoneout(zoneout, compute, projected)
    ln = _kernel_input("layer_norm", layer_norm, compute, projected)
    has_init = h0 is not None or c0 is not None
    h0, c0 = (s if s is not None else y.new_zeros(B, n) for s, n in ((h0, w_hh.shape[1]), (c0, H)))  # read if has_init
    dh = dh.to(compute, copy=True)
    dc = dc.to(compute, copy=True) if cell.has_cell_state else dh
    dh_rec = y.new_zeros(B, H)
    dgx = new_empty(y, T, B, GH)
    dhg = dgx if cell.recurrent_grad_is_input_grad and ln is None else new_empty(y, T, B, GH)
    # Layer norm's per-step per-row contributions to its parameters' gradients and the bias's, in the compute
    # dtype for the sums after the loop.
    ln_grads = None
    if ln is not None:
        ln_grads = new_empty(dh, T, B, ln_module.grad_blocks(cell.gates, cell.has_cell_state) * H)
    # Rows sit at different times only in the reverse direction of a variable-length batch; then the
    # kernel also writes each step's dhg into a contiguous (B, GH) buffer for the recurrent GEMM (two
    # that alternate when the next step's programs read one while writing the other).
    write_step = reverse and lengths is not None
    dsteps = new_empty(y, 2 if strategy.gemm_in_kernel else 1, B, GH) if write_step else dgx

    def step_grad(k: int) -> torch.Tensor:
        """The (B, GH) gradient of the recurrent pre-activations at the k-th step processed."""
        if write_step:
            return dsteps[k % 2 if strategy.gemm_in_kernel else 0]
        return dhg[k if reverse else T - 1 - k]

    if projected:
        dh_r = y.new_zeros(B, w_hh.shape[1])

    def host_gemm(k: int) -> None:
        if projected:
            torch.mm(step_grad(k), w_hh, out=dh_r)
            if k < T - 1:  # after the last step dh_r is d_h0
                torch.mm(dh_r, w_hr, out=dh_rec)
        else:
            torch.mm(step_grad(k), w_hh, out=dh_rec)

    # The per-tile partial sums of squares of dL/dh_t (and dL/dc_t), zeros where a strategy's tiles leave
    # columns unused; summed after the loop.
    flow = dh.new_zeros(cell.states, T, B, tiles.flow_columns(H)) if record_flow else None
    # What the kernels clip with, in the compute dtype: the threshold, or (norm) each row's factor.
    if clip_by_norm:
        clip_factors = _norm_clip_factors(0, T, dh_rec, dh, dy, lengths, reverse, clip)
    elif clip_mode:
        clip_factors = dh.new_full((1,), clip)

    args = dict(
        acts_ptr=acts if acts.numel() else y, y_ptr=y, h0_ptr=h0, c0_ptr=c0, dy_ptr=dy, dh_rec_ptr=dh_rec,
        w_hh_ptr=w_hh, dh_ptr=dh, dc_ptr=dc, dgx_ptr=dgx, dhg_ptr=dhg, dstep_ptr=dsteps,
        dstep_flip=B * GH if write_step and strategy.gemm_in_kernel else 0,
        lengths_ptr=lengths if lengths is not None else y, rmask_ptr=rmask if rmask is not None else y,
        zoneout_ptr=zoneout if zoneout is not None else y, flow_ptr=flow if record_flow else dh,
        clip_ptr=clip_factors if clip_mode else dh, ln_ptr=ln if ln is not None else dh,
        ln_grad_ptr=ln_grads if ln is not None else dh, sync_ptr=_sync_buffer(strategy, y.device), T=T, B=B, H=H,
    )  # stand-ins for absent tensors are never read
    flags = dict(
        CELL_STEP=cell.backward_step, CELL_VARIANT=cell.variant, GATES=cell.gates, HAS_INIT=has_init,
        HAS_LENGTHS=lengths is not None, REVERSE=reverse, WRITE_STEP=write_step,
        GEMM_IN_KERNEL=strategy.gemm_in_kernel, RECURRENT_MASK=rmask is not None, ZONEOUT=zoneout_mode,
        COMPUTE=tl_compute, RECORD_FLOW=record_flow, CLIP=CLIP_MODES[clip_mode], **gemm_flags(y.dtype, allow_tf32),
        W_ON_CHIP=0, LAYER_NORM=int(ln is not None),  # the persistent strategy may set W_ON_CHIP (persistent.py)
    )

    def host_gemm_and_clip(k: int) -> None:
        """Norm clipping: after step k's GEMM every part of the next step's dL/dh is known."""
        host_gemm(k)
        if k < T - 1:
            # The kernel masks dh_rec as it reads it (recurrent dropout); the norm is of what it adds up.
            seen = dh_rec * rmask if rmask is not None else dh_rec
            clip_factors.copy_(_norm_clip_factors(k + 1, T, seen, dh, dy, lengths, reverse, clip))

    if B:
        gemm = None if strategy.gemm_in_kernel else host_gemm_and_clip if clip_by_norm else host_gemm
        strategy.run(TimeLoop(backward_kernel, args, flags, T, B, H, y.dtype, y.device, gemm, False))
    first = step_grad(T - 1)  # the gate gradients of each row's first step
    if strategy.gemm_in_kernel:
        torch.mm(first, w_hh, out=dh_rec)
    if rmask is not None:  # the first step's product read h0 * m
        dh_rec.mul_(rmask)

    # dW_hh = sum_t dhg_t^T h_{t-1}. h_{t-1} is y at the previous time (zero in padding, where dhg
    # is zero too), projected where there is a projection; each row's first step uses h0.
    # The recurrence's share of dW_hr = sum_t dh_r_t^T h_raw_t, with dh_r_t = dhg_{t+1} @ W_hh the gradient
    # that reached h_r_t through the next step's recurrent GEMM (pairs of times as for dW_hh).
    d_w_hh, d_w_hr = y.new_empty(0), y.new_empty(0)
    if T > 1 and (w_hh_grad or (projected and w_hr_grad)):
        later, earlier = (dhg[:-1], y[1:]) if reverse else (dhg[1:], y[:-1])
        if rmask is not None:  # what the products read
            earlier = earlier * rmask.to(y.dtype)
        later, earlier = later.reshape(-1, GH), earlier.reshape(-1, H)
        if w_hh_grad:
            d_w_hh = later.t() @ (earlier @ w_hr.t() if projected else earlier)
        if projected and w_hr_grad:
            d_w_hr = (later @ w_hh).t() @ earlier
    if w_hh_grad:
        if T == 1:
            d_w_hh = w_hh.new_zeros(w_hh.shape)
        if has_init:
            d_w_hh = d_w_hh + first.t() @ (h0 * rmask.to(h0.dtype) if rmask is not None else h0)
    if projected and w_hr_grad and T == 1:
        d_w_hr = w_hr.new_zeros(w_hr.shape)
    if projected:
        # The last host GEMM gave first @ W_hh. dh holds what passed a row by without a step (a row of
        # length 0): the gradient of an h_raw before the first step, which a projected state has not.
        d_h0 = dh_r.clone()
    else:
        d_h0 = (dh + dh_rec.to(compute)).to(y.dtype)
    d_c0 = dc.to(y.dtype) if cell.has_cell_state else y.new_empty(0)
    flow = flow.sum(3).sqrt() if record_flow else y.new_empty(0)
    if ln is None:
        return dgx, d_w_hh, dhg.sum((0, 1)), d_h0, d_c0, d_w_hr, flow, y.new_empty(0)
    sums = ln_grads.sum((0, 1)).to(y.dtype)  # [b_hh + beta_h's, gamma_h's, (LSTM) gamma_c's, beta_c's]
    return dgx, d_w_hh, sums[:GH], d_h0, d_c0, d_w_hr, flow, sums[GH:].clone()  # outputs must not alias


CLIP_MODES = {"": 0, "value": 1, "norm": 2}  # the kernels' CLIP


def _norm_clip_factors(k: int, T: int, dh_rec: torch.Tensor, dh: torch.Tensor, dy: torch.Tensor,
                       lengths: torch.Tensor | None, reverse: bool, clip: float) -> torch.Tensor:
    """Each row's factor min(1, clip / ||dL/dh_t||) for the k-th step processed (time step T-1-k, each row
    at its own time as in the kernels' step_positions), from the parts the kernel will add up: what came
    through the recurrent GEMM, the direct path, and dy at the row's time."""
    step = T - 1 - k
    B = dh.shape[0]
    rows = torch.arange(B, device=dh.device)
    if lengths is None:
        active = torch.ones(B, dtype=torch.bool, device=dh.device)
        times = torch.full_like(rows, T - 1 - step if reverse else step)
    else:
        active = step < lengths
        times = torch.where(active, lengths - 1 - step, step).long() if reverse else torch.full_like(rows, step)
    total = dh_rec.to(dh.dtype) + dh + dy[times, rows].to(dh.dtype)
    norm = total.norm(dim=1)
    return torch.where(active & (norm > clip), clip / norm, torch.ones_like(norm))


def _unprojected(name: str, projected: bool) -> None:
    """The per-step options run on the fused step kernels, which a projection replaces by the stepwise pattern."""
    if projected:
        raise ValueError(f"fusedrnn: {name} with an LSTM projection (proj_size > 0) is not implemented")


def _kernel_input(name: str, tensor: torch.Tensor | None, compute: torch.dtype,
                  projected: bool) -> torch.Tensor | None:
    """An optional per-step input (recurrent dropout's mask, layer_norm's parameters) as the kernels read it:
    contiguous, in the compute dtype."""
    if tensor is None:
        return None
    _unprojected(name, projected)
    return tensor.to(compute).contiguous()


def _zoneout(zoneout: torch.Tensor | None, compute: torch.dtype,
             projected: bool) -> tuple[torch.Tensor | None, int]:
    """Zoneout as the kernels read it, and their ZONEOUT flag: none (0); training's (states, T, B, H) bool masks,
    True where a unit keeps its previous value, as uint8 (1); evaluation's (states,) rates, the expectation, in
    the compute dtype (2: a tensor, since a float argument would be rounded to float32)."""
    if zoneout is None:
        return None, 0
    _unprojected("zoneout", projected)
    if zoneout.dim() == 1:
        return zoneout.to(compute).contiguous(), 2
    return zoneout.contiguous().view(torch.uint8), 1


def saved_blocks(cell, zoneout: bool, layer_norm: bool) -> int:
    """Blocks of H the forward saves per row and step: the cell's, and layer norm's raw recurrent product."""
    return cell.saved(zoneout) + (cell.gates if layer_norm else 0)


def contiguous(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The kernels index dense row-major buffers; compiled graphs may hand the ops other strides."""
    return [t.contiguous() if t is not None else None for t in tensors]
