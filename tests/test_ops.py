"""The recurrence as custom ops (fusedrnn/ops.py) and what they open: torch.compile, torch.export, torch.func,
TorchScript, autocast and a clear error for double backward. Every fused module runs a Triton backend in
the interpreter and is checked against its torch.nn twin in float64 (same weights)."""

import copy
import subprocess
import sys

import pytest
import torch
from helpers import OpRecorder, assert_all_close, flat_outputs, random_like_module, refuse_op
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.autograd import forward_ad

import fusedrnn
from fusedrnn import ops
from fusedrnn.ops import recurrence_backward_op, recurrence_op

MODULES = ["LSTM", "GRU", "LSTMCell", "GRUCell"]
T, B, I, H = 4, 2, 3, 5


def op_call(name):
    """How a graph's code calls the op a fused module `name` runs: the cell step for a cell, else the
    recurrence."""
    return f"torch.ops.fusedrnn.{'cell_step' if name.endswith('Cell') else 'recurrence'}.default("


class Model(nn.Module):
    """A model around one RNN module, returning its outputs as a flat tuple."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, *states):
        hx = states if len(states) == 2 else states[0]
        return tuple(flat_outputs(self.rnn(x, hx)))


def pair(name, backend="triton", dtype=torch.float64, device="cpu"):
    """A fused module (two bidirectional layers for LSTM/GRU) with random weights, and its torch.nn twin in
    float64 with the same weights."""
    kwargs = dict(num_layers=2, bidirectional=True) if name in ("LSTM", "GRU") else {}
    fused = random_like_module(getattr(fusedrnn, name)(I, H, backend=backend, **kwargs)).to(device, dtype)
    twin = getattr(nn, name)(I, H, dtype=torch.float64, **kwargs)
    twin.load_state_dict(fused.state_dict())
    return fused, twin


def inputs(name, seed=0):
    """(x, *initial states) for a module `name`, float64 leaves."""
    g = torch.Generator().manual_seed(seed)
    cell = name.endswith("Cell")
    x_shape, state_shape = ((B, I), (B, H)) if cell else ((T, B, I), (4, B, H))
    states = 2 if name.startswith("LSTM") else 1
    return [torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
            for shape in (x_shape, *[state_shape] * states)]


def assert_matches_torch(run, parameters, twin, args):
    """run(*args) gives the flat outputs of a fused model whose parameters are `parameters` (by torch's
    names): its outputs, and the gradients of its inputs and parameters, equal the float64 twin's."""
    outputs = run(*args)
    ref_args = [a.detach().clone().requires_grad_() for a in args]
    expected = Model(twin)(*ref_args)
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(e.shape, generator=g, dtype=torch.float64) for e in expected]
    names = sorted(parameters)
    grads = torch.autograd.grad(outputs, [*args, *(parameters[n] for n in names)], upstream)
    ref_params = dict(twin.named_parameters())
    ref_grads = torch.autograd.grad(expected, [*ref_args, *(ref_params[n] for n in names)], upstream)
    assert_all_close(list(outputs), list(expected), torch.float64, [f"output {k}" for k in range(len(outputs))])
    assert_all_close(list(grads), list(ref_grads), torch.float64, [f"input {k}" for k in range(len(args))] + names)


def test_import_defines_no_triton_kernels():
    """Triton decides at kernel definition whether to interpret (TRITON_INTERPRET): importing fusedrnn
    registers the ops but defines no kernel."""
    code = ("import sys, torch, fusedrnn; assert torch.ops.fusedrnn.recurrence is not None; "
            "print(sorted(m for m in sys.modules if m.startswith(('fusedrnn.cells.', 'fusedrnn.strategies.'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("lengths", [None, [4, 2]])
def test_opcheck(mode, lengths):
    """torch's own checks of a custom op: schema (no output aliases an input or another output), the fake
    implementation against the real one, the autograd registration, and AOT tracing."""
    gates, states = (4, 2) if mode == "LSTM" else (3, 1)
    g = torch.Generator().manual_seed(0)

    def draw(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()

    gx, w_hh, b_hh = draw(T, B, gates * H), draw(gates * H, H), draw(gates * H)
    h0, c0 = draw(B, H), draw(B, H) if states == 2 else None
    length = torch.tensor(lengths, dtype=torch.int32) if lengths else None
    for strategy in ("triton", "triton-persistent"):
        args = (mode, strategy, gx, w_hh, b_hh, h0, c0, length, True, True, False)
        torch.library.opcheck(recurrence_op, args)
        y, h_n, c_n, acts = (t.detach() for t in recurrence_op(*args))
        dy, dh, dc = torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(h_n)
        grad_args = (mode, strategy, dy, dh, dc, acts, y, w_hh.detach(), h0.detach(), c0, length, True, False, True)
        torch.library.opcheck(recurrence_backward_op, grad_args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("name", MODULES)
def test_compile_fullgraph_matches_torch(name):
    """torch.compile(fullgraph=True) of a model around a fused module traces into one graph holding the op,
    and its outputs and gradients are torch.nn's. Dynamo refuses nn.LSTM/GRU, subclasses included, unless
    allow_rnn is set; with it, it inlines the fused forward (see README)."""
    torch._dynamo.reset()
    fused, twin = pair(name)
    counter = CompileCounterWithBackend("inductor")
    model = torch.compile(Model(fused), backend=counter, fullgraph=True, dynamic=True)
    with torch._dynamo.config.patch(allow_rnn=True):
        assert_matches_torch(model, dict(fused.named_parameters()), twin, inputs(name))
    calls = 1 if name.endswith("Cell") else 4  # a call per direction and layer
    assert sum(graph.code.count(op_call(name)) for graph in counter.graphs) == calls


@pytest.mark.parametrize("name", MODULES)
def test_export_holds_the_op(name):
    fused, twin = pair(name)
    args = inputs(name)
    program = torch.export.export(Model(fused), tuple(a.detach() for a in args))
    assert op_call(name) in program.graph_module.code
    module = program.module()
    parameters = {n.removeprefix("rnn."): p for n, p in module.named_parameters()}
    assert_matches_torch(module, parameters, twin, args)


@pytest.mark.parametrize("name", MODULES)
def test_plain_eager_runs_the_ops_implementations_without_their_dispatch(name, monkeypatch):
    """On plain tensors with nothing looking, a module runs the ops' implementations without the dispatcher's
    round trip (host time) and still matches torch, every gradient included; a dispatch mode sees the ops."""
    fused, twin = pair(name)
    args = inputs(name)
    with OpRecorder() as recorder:
        Model(fused)(*args)
    assert any(op_call(name).startswith(f"torch.ops.{called}(") for called, _ in recorder.calls)
    for wrapper in (ops._recurrence, ops._recurrence_backward, ops._cell_step, ops._cell_step_backward):
        refuse_op(monkeypatch, wrapper)
    assert_matches_torch(Model(fused), dict(fused.named_parameters()), twin, args)


@pytest.mark.parametrize("name", ["LSTM", "GRUCell"])
def test_profiler_traces_name_the_ops(name):
    """Under torch's profiler the ops run through their dispatch, so that a trace names them, forward and backward."""
    fused, _ = pair(name)
    with torch.profiler.profile() as profile:
        sum(o.sum() for o in Model(fused)(*inputs(name))).backward()
    op = op_call(name).removeprefix("torch.ops.").removesuffix(".default(").replace(".", "::")
    assert {op, f"{op}_backward"} <= {event.name for event in profile.events()}


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("how", ["autograd", "torch.func"])
def test_double_backward_raises(name, how):
    fused, _ = pair(name)
    model = Model(fused)
    x, *states = inputs(name)

    def loss(x):
        return sum(o.square().sum() for o in model(x, *states))

    with pytest.raises(RuntimeError, match="no double backward.*backend='torch'"):
        if how == "autograd":
            (dx,) = torch.autograd.grad(loss(x), x, create_graph=True)
            torch.autograd.grad(dx.square().sum(), x)
        else:
            torch.func.grad(lambda x: torch.func.grad(loss)(x).square().sum())(x.detach())


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("grad", [False, True])
def test_forward_mode_ad_raises(name, grad):
    """Dual tensors get a clear error, under no_grad too (where forward AD still runs and the ops would
    otherwise return outputs without tangents)."""
    fused, _ = pair(name)
    x, *states = inputs(name)
    with torch.set_grad_enabled(grad), forward_ad.dual_level():
        dual = forward_ad.make_dual(x.detach(), torch.randn_like(x))
        with pytest.raises(NotImplementedError, match="no forward-mode AD.*backend='torch'"):
            Model(fused)(dual, *states)


@pytest.mark.parametrize("name", ["LSTM", "GRUCell"])
def test_torch_func_grad_matches_torch(name):
    fused, twin = pair(name)
    model = Model(fused)
    args = inputs(name)
    expected = Model(twin)(*args)
    upstream = [torch.randn_like(e) for e in expected]

    def loss(parameters, *args):
        return sum((o * u).sum() for o, u in zip(torch.func.functional_call(model, parameters, args), upstream))

    parameters = {n: p.detach() for n, p in model.named_parameters()}
    by_name, *grads = torch.func.grad(loss, argnums=tuple(range(len(args) + 1)))(parameters, *(a.detach() for a in args))
    names = [n for n, _ in twin.named_parameters()]
    ref = torch.autograd.grad(expected, [*args, *twin.parameters()], upstream)
    grads += [by_name["rnn." + n] for n in names]
    assert_all_close(grads, list(ref), torch.float64, [f"input {k}" for k in range(len(args))] + names)


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch's loop over the vmapped dimension
def test_per_sample_gradients_by_vmap_of_grad():
    fused, twin = pair("GRU")
    parameters = {n: p.detach() for n, p in fused.named_parameters()}
    xs = torch.randn(2, T, B, I, dtype=torch.float64)

    def loss(parameters, x):
        return torch.func.functional_call(fused, parameters, (x,))[0].square().sum()

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(parameters, xs)
    for k, x in enumerate(xs):
        expected = torch.autograd.grad(twin(x)[0].square().sum(), list(twin.parameters()))
        names = [n for n, _ in twin.named_parameters()]
        assert_all_close([grads[n][k] for n in names], list(expected), torch.float64, names)


class Tagger(nn.Module):
    """Every fused module in one model, as torch.jit.script meets them."""

    def __init__(self):
        super().__init__()
        self.lstm = fusedrnn.LSTM(I, H, num_layers=2, bidirectional=True, backend="triton")
        self.gru = fusedrnn.GRU(2 * H, H, backend="triton")
        self.lstm_cell = fusedrnn.LSTMCell(H, H, backend="triton")
        self.gru_cell = fusedrnn.GRUCell(H, H, backend="triton")

    def forward(self, x):
        y, _ = self.lstm(x)
        y, h = self.gru(y)
        h, c = self.lstm_cell(h[0])
        return self.gru_cell(h + c)


def test_script_runs_torch_implementation_with_the_same_parameters():
    model = random_like_module(Tagger()).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    fused_output = model(x)
    scripted = torch.jit.script(model)
    assert_all_close([scripted(x)], [fused_output], torch.float64, ["output"])
    assert scripted.lstm.weight_hh_l1_reverse.data_ptr() == model.lstm.weight_hh_l1_reverse.data_ptr()
    # torch prepares a model for scripting in place: its fused modules are now their torch twins, and
    # convert swaps them back (README).
    assert type(model.lstm) is nn.LSTM and type(model.gru_cell) is nn.GRUCell
    fusedrnn.convert(model, backend="triton")
    assert type(model.lstm) is fusedrnn.LSTM
    assert_all_close([model(x)], [fused_output], torch.float64, ["output"])


AUTOCAST_CASES = [
    pytest.param("cpu", True, id="cpu-onednn"),
    pytest.param("cpu", False, id="cpu-no-onednn"),
    pytest.param("cuda", True, id="cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]),
]


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("device, onednn", AUTOCAST_CASES)
def test_autocast_gives_torchs_dtypes(name, device, onednn, monkeypatch):
    """Under autocast every fused module returns the dtypes its torch twin returns on the same device (on
    the CPU nn.LSTM follows oneDNN's flag), with values within bfloat16's tolerance of float64. The twin's
    dtypes come from a run on fake tensors: this CPU's oneDNN may have no bfloat16 LSTM to run."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)
    fused, twin = pair(name, dtype=torch.float32, device=device)
    args = [a.detach() for a in inputs(name)]
    twin32 = Model(copy.deepcopy(twin).to(device, torch.float32))
    with torch.autocast(device, dtype=torch.bfloat16):
        outputs = Model(fused)(*(a.to(device, torch.float32) for a in args))
        with FakeTensorMode(allow_non_fake_inputs=True) as fake:
            expected_dtypes = [o.dtype for o in twin32(*(fake.from_tensor(a.to(device, torch.float32)) for a in args))]
    assert [o.dtype for o in outputs] == expected_dtypes
    expected = Model(twin)(*args)
    assert_all_close([o.cpu() for o in outputs], list(expected), torch.bfloat16, [f"output {k}" for k in range(len(outputs))])
