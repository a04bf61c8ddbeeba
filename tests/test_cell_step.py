"""The cells' one-launch step (fusedrnn/strategies/single_step.py) in Triton's interpreter: every cell against
its float64 reference step (new states and every gradient) in four dtypes and the cell modules' input forms,
gradcheck, torch's checks of the custom ops, and that a step is one kernel launch each way, not the
recurrence."""

import pytest
import torch
from helpers import OpRecorder, assert_all_close, random_like_module, refuse_op
from triton.runtime.interpreter import InterpretedFunction

from fusedrnn import ops as ops_module
from fusedrnn._backend import TRITON_BACKENDS
from fusedrnn.cells import MODES, REGISTRY, cell
from fusedrnn.nn import FUSED_CELLS
from fusedrnn.ops import cell_step, cell_step_backward_op, cell_step_op

I, H = 5, 37  # H = 37: two hidden tiles of 32, the second one partly masked

# name: (batch, bias, hx given, batched); B = 17 spans two batch tiles of 16.
CASES = {
    "full": (3, True, True, True),
    "no-bias": (3, False, True, True),
    "no-hx": (3, True, False, True),
    "unbatched": (1, True, True, False),
    "batch-tiles": (17, True, True, True),
}
DTYPE_CASES = [(dtype, case) for dtype in (torch.float32, torch.float64) for case in CASES]
DTYPE_CASES += [(torch.float16, "full"), (torch.bfloat16, "full")]


def fused_cell(mode, dtype, bias=True, backend="triton", input_size=I, hidden_size=H):
    module = FUSED_CELLS[mode](input_size, hidden_size, bias=bias, backend=backend, dtype=torch.float64,
                               **REGISTRY[mode].options)
    return random_like_module(module).to(dtype)


def draw_inputs(mode, dtype, batch, with_hx, batched, g):
    """x and the states (leaves in `dtype`), and hx as the module takes it."""
    lead = (batch,) if batched else ()
    x = torch.randn(*lead, I, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    states = [torch.randn(*lead, H, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
              for _ in range(REGISTRY[mode].states)] if with_hx else []
    hx = (tuple(states) if len(states) == 2 else states[0]) if with_hx else None
    return x, states, hx


def as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype, case", DTYPE_CASES, ids=lambda v: str(v).removeprefix("torch."))
def test_step_matches_the_float64_reference(mode, dtype, case):
    batch, bias, with_hx, batched = CASES[case]
    module = fused_cell(mode, dtype, bias)
    g = torch.Generator().manual_seed(0)
    x, states, hx = draw_inputs(mode, dtype, batch, with_hx, batched, g)
    out = as_list(module(x, hx))
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in out]
    params = list(module.parameters())  # weight_ih, weight_hh[, bias_ih, bias_hh]
    grads = torch.autograd.grad(out, [x, *states, *params], [u.to(dtype) for u in upstream])

    # The reference on the very values the kernel saw (inputs and weights rounded to dtype), in float64.
    rx, rstates, rparams = (x.detach().double().requires_grad_(),
                            [s.detach().double().requires_grad_() for s in states],
                            [p.detach().double().requires_grad_() for p in params])
    given = [s.reshape(-1, H) for s in rstates] or [torch.zeros(batch, H, dtype=torch.float64)] * REGISTRY[mode].states
    expected = [s.reshape(out[0].shape) for s in cell(mode).reference_step(rx.reshape(-1, I), tuple(given), *rparams)]
    expected_grads = torch.autograd.grad(expected, [rx, *rstates, *rparams], upstream)

    assert [(o.shape, o.dtype) for o in out] == [(e.shape, dtype) for e in expected]
    assert_all_close(out, expected, dtype, ["h", "c"][: len(out)])
    names = ["input"] + [f"hx[{k}]" for k in range(len(states))] + [n for n, _ in module.named_parameters()]
    assert_all_close(list(grads), list(expected_grads), dtype, names)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode):
    g = torch.Generator().manual_seed(1)
    gates, n_states = cell(mode).gates, REGISTRY[mode].states

    def draw(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()

    x, w_ih, w_hh, b_ih, b_hh = draw(2, 2), draw(gates * 3, 2), draw(gates * 3, 3), draw(gates * 3), draw(gates * 3)
    states = [draw(2, 3) for _ in range(n_states)]

    def step(x, w_ih, w_hh, b_ih, b_hh, *states):
        return cell_step(mode, x, states, w_ih, w_hh, b_ih, b_hh)

    assert torch.autograd.gradcheck(step, (x, w_ih, w_hh, b_ih, b_hh, *states))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_hx", [True, False])
def test_opcheck(mode, with_hx):
    """torch's own checks of the custom ops: schema, fake against real, autograd registration, AOT tracing."""
    g = torch.Generator().manual_seed(2)
    gates, n_states = cell(mode).gates, REGISTRY[mode].states

    def draw(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()

    x, w_ih, w_hh, b_ih, b_hh = draw(3, I), draw(gates * H, I), draw(gates * H, H), draw(gates * H), draw(gates * H)
    h, c = (draw(3, H) if with_hx else None), (draw(3, H) if with_hx and n_states == 2 else None)
    args = (mode, x, h, c, w_ih, w_hh, b_ih, b_hh, True, False)
    torch.library.opcheck(cell_step_op, args)
    h_new, c_new, acts = (t.detach() for t in cell_step_op(*args))
    dc = torch.randn_like(h_new) if n_states == 2 else None
    detached = [t.detach() if t is not None else None for t in (x, h, c, w_ih, w_hh)]
    grad_args = (mode, torch.randn_like(h_new), dc, acts, h_new, *detached, [True] * 7)
    torch.library.opcheck(cell_step_backward_op, grad_args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", TRITON_BACKENDS)
def test_a_step_is_one_launch_each_way_and_not_the_recurrence(mode, backend, monkeypatch):
    """Every Triton backend runs the same step: one kernel forward, one kernel (and torch's GEMMs) backward;
    the recurrence op is not called; under no_grad nothing is saved for a backward."""
    launches = []
    launch = InterpretedFunction.run
    monkeypatch.setattr(InterpretedFunction, "run", lambda self, *args, **kwargs: launches.append(
        f"{self.fn.__module__}.{self.__name__}") or launch(self, *args, **kwargs))
    module = fused_cell(mode, torch.float32, backend=backend)
    x, _, hx = draw_inputs(mode, torch.float32, 3, True, True, torch.Generator().manual_seed(3))
    with OpRecorder() as recorder:
        out = as_list(module(x, hx))
    ops = [name for name, _ in recorder.calls]
    assert "fusedrnn.cell_step.default" in ops and not any(name.startswith("fusedrnn.recurrence") for name in ops)
    assert launches == ["fusedrnn.strategies.single_step.forward_kernel"]
    launches.clear()
    sum(o.sum() for o in out).backward()
    assert launches == ["fusedrnn.strategies.single_step.backward_kernel"]

    with torch.no_grad(), OpRecorder() as recorder:
        module(x, hx)
    (store_acts,) = [args[8] for name, args in recorder.calls if name == "fusedrnn.cell_step.default"]
    assert store_acts is False


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["full", "no-hx", "unbatched"])
def test_plain_eager_skips_the_op_and_gives_the_same_step(mode, case, monkeypatch):
    """On plain tensors with nothing looking (no compiler, tracer or dispatch mode) the step runs its
    implementation without the custom op's dispatch (host time): under no_grad directly, in training inside an
    autograd.Function with the op's backward. Same numbers and gradients as through the op."""
    batch, bias, with_hx, batched = CASES[case]
    module = fused_cell(mode, torch.float32, bias)
    x, states, hx = draw_inputs(mode, torch.float32, batch, with_hx, batched, torch.Generator().manual_seed(5))
    leaves = [x, *states, *module.parameters()]

    def step_and_gradients():
        out = as_list(module(x, hx))
        return out, torch.autograd.grad(sum(o.square().sum() for o in out), leaves)

    with OpRecorder():  # a dispatch mode is looking: the ops run
        through_op, through_op_grads = step_and_gradients()
        with torch.no_grad():
            through_op_inference = as_list(module(x, hx))
    refuse_op(monkeypatch, ops_module._cell_step)
    refuse_op(monkeypatch, ops_module._cell_step_backward)
    direct, direct_grads = step_and_gradients()
    with torch.no_grad():
        direct_inference = as_list(module(x, hx))
    frozen = [t.detach() for t in (x, *(as_list(hx) if hx is not None else []))]
    plain = random_like_module(fused_cell(mode, torch.float32, bias)).requires_grad_(False)
    plain.load_state_dict(module.state_dict())
    no_grad_inputs = as_list(plain(frozen[0], (tuple(frozen[1:]) if len(frozen) > 2 else frozen[1])
                                   if hx is not None else None))
    for got, want in ((direct, through_op), (direct_grads, through_op_grads), (direct_inference, through_op),
                      (through_op_inference, through_op), (no_grad_inputs, through_op)):
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))
    assert all(o.requires_grad and o.grad_fn is not None for o in direct)
    assert not any(o.requires_grad for o in direct_inference + no_grad_inputs)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_jit_trace_under_no_grad_records_the_op():
    """torch.jit.trace is a tracer too: the step goes through the op (which the trace records), not around it,
    so the traced module computes on new inputs what the module does."""
    module = fused_cell("LSTM", torch.float32)
    g = torch.Generator().manual_seed(7)
    x, _, hx = draw_inputs("LSTM", torch.float32, 3, True, True, g)
    x2, _, hx2 = draw_inputs("LSTM", torch.float32, 3, True, True, g)
    with torch.no_grad():
        traced = torch.jit.trace(module, (x, hx), check_trace=False)
        assert "fusedrnn::cell_step" in str(traced.graph)
        assert all(torch.equal(a, b) for a, b in zip(traced(x2, hx2), module(x2, hx2)))


@pytest.mark.parametrize("mode", MODES)
def test_double_backward_raises_in_plain_eager_mode(mode, monkeypatch):
    """create_graph records the backward step (in plain eager mode without its op), whose own backward refuses."""
    refuse_op(monkeypatch, ops_module._cell_step_backward)
    module = fused_cell(mode, torch.float32)
    x, _, hx = draw_inputs(mode, torch.float32, 3, True, True, torch.Generator().manual_seed(6))
    out = sum(o.square().sum() for o in as_list(module(x, hx)))
    (dx,) = torch.autograd.grad(out, x, create_graph=True)
    assert dx.requires_grad
    with pytest.raises(RuntimeError, match="no double backward"):
        torch.autograd.grad(dx.sum(), x)


def test_every_triton_backend_gives_the_same_step():
    x, _, hx = draw_inputs("LSTM", torch.float32, 3, True, True, torch.Generator().manual_seed(4))
    results = [as_list(fused_cell("LSTM", torch.float32, backend=backend)(x, hx)) for backend in TRITON_BACKENDS]
    assert all(torch.equal(a, b) for result in results[1:] for a, b in zip(result, results[0]))


def test_auto_runs_torch_for_the_step_where_no_gpu_run_measured_it():
    """A kernel becomes auto's choice only where a committed GPU run measured it faster: the one-launch step has
    no such run on the H200 or an unknown GPU, nor in float64."""
    from fusedrnn.strategies import dispatch

    for gpu in ("NVIDIA H200", "Some Future GPU"):
        for dtype in (torch.float32, torch.bfloat16, torch.float64):
            assert dispatch.lookup(gpu, "step", "LSTM", dtype, 64, 512) == "torch"
