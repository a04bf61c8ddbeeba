"""Real sizes on a CUDA GPU (`pytest -m gpu`): the compiled Triton kernels against a float64 reference,
each error held to torch's (cuDNN's) error in the same dtype. Skipped without CUDA, except that
GPU_CHECK_DRY=1 runs the same code on the CPU, in Triton's interpreter, at tiny sizes."""

import os

import pytest
import torch
from helpers import GATED_MODES, canonical, make_input
from torch import nn

import fusedrnn
from fusedrnn._backend import TRITON_BACKENDS
from fusedrnn.cells import REGISTRY
from fusedrnn.nn import FUSED_CELLS
from fusedrnn.testing import compare, tolerance

DRY = os.environ.get("GPU_CHECK_DRY") == "1" and not torch.cuda.is_available()
DEVICE = "cpu" if DRY else "cuda"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available() or DRY), reason="needs a CUDA GPU (or GPU_CHECK_DRY=1)"),
]

# (B, H, T, extra constructor arguments, packed with random lengths)
SHAPES = [
    (64, 512, 256, {}, False),
    (16, 1024, 512, {}, False),
    (3, 37, 7, {}, False),
    (48, 256, 64, dict(num_layers=2, bidirectional=True), True),
    (32, 128, 96, dict(batch_first=True), False),
]
# The persistent strategy also at one step, and at T=1024 with odd sizes (tiles cut at both edges).
PERSISTENT_SHAPES = SHAPES + [(17, 129, 1, {}, False), (5, 200, 1024, {}, False)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
if DRY:
    SHAPES = PERSISTENT_SHAPES = [(3, 37, 7, {}, False), (4, 8, 5, dict(num_layers=2, bidirectional=True), True)]
    DTYPES = [torch.float32, torch.float16]


def layer_cases():
    """(backend, direct launches, shape) to check: every strategy at every shape; the direct launches of
    the per-step strategies (FUSEDRNN_DIRECT_LAUNCH) at one shape (2-layer bidirectional packed: every
    argument the kernels take), which keeps gpu-check's test stage inside its time."""
    cases = [("triton-persistent", False, shape) for shape in PERSISTENT_SHAPES]
    cases += [("triton-fusedstep", False, shape) for shape in SHAPES]
    cases += [("triton", False, shape) for shape in SHAPES[:2]]
    cases += [(backend, True, SHAPES[-2]) for backend in ("triton", "triton-fusedstep")]
    return [pytest.param(*case, id=f"{case[0]}-{'direct' if case[1] else 'jit'}-{shape_id(case[2])}") for case in cases]


def shape_id(shape):
    """A test id for a (B, H, T, extra, packed) shape."""
    B, H, T, extra, packed = shape
    return f"B{B}-H{H}-T{T}" + "".join(f"-{k}" for k in extra) + ("-packed" if packed else "")


def outputs_and_grads(module, dtype, x64, states64, upstream, lengths):
    """Outputs and the gradients of every input, state and parameter, for `module` run in `dtype`."""
    x = x64.to(dtype).requires_grad_()
    states = [s.to(dtype).requires_grad_() for s in states64]
    hx = tuple(states) if module.mode == "LSTM" else states[0]
    out = canonical(module(make_input(x, batch_first=module.batch_first, lengths=lengths), hx), module.batch_first)
    grads = torch.autograd.grad(out, [x, *states, *module.parameters()], [u.to(dtype) for u in upstream])
    return out + list(grads)


def assert_within_torch_error(names, got, theirs, expected, dtype, ratio=4.0):
    """Each of ours is within the dtype's tolerance of float64, or within `ratio` x torch's own error."""
    atol, rtol = tolerance(dtype)
    failures = []
    for name, g, t, e in zip(names, got, theirs, expected):
        ours, torchs = compare(g, e, dtype), compare(t, e, dtype)
        if ours.max_abs > max(atol + rtol * float(e.detach().abs().max()), ratio * torchs.max_abs):
            failures.append(f"{name}: fused {ours}; torch {torchs}")
    assert not failures, "\n".join(failures)


def elman_cases():
    """The Elman cell (new, checked on a GPU by nothing else yet): every strategy on the packed, bidirectional
    two-layer shape (small, to stay inside gpu-check's time for this step)."""
    shapes = (SHAPES[1] if DRY else SHAPES[3],)
    return [pytest.param(mode, backend, False, shape, id=f"{mode}-{backend}-{shape_id(shape)}")
            for mode in ("RNN_TANH", "RNN_RELU") for backend in TRITON_BACKENDS for shape in shapes]


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend, direct_launch, shape", layer_cases())
def test_layer_against_cudnn(backend, mode, dtype, shape, direct_launch, monkeypatch):
    """Every strategy, launched through Triton's JIT and directly (StepLauncher), against float64 and cuDNN."""
    check_layer_against_cudnn(backend, mode, dtype, shape, direct_launch, monkeypatch)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode, backend, direct_launch, shape", elman_cases())
def test_elman_layer_against_cudnn(backend, mode, dtype, shape, direct_launch, monkeypatch):
    check_layer_against_cudnn(backend, mode, dtype, shape, direct_launch, monkeypatch)


# W_hh on chip (FUSEDRNN_W_ON_CHIP, opt-in): shapes where the persistent strategy gives every program one tile
# (128 programs of 16x16 at B=64 H=512, 64 at B=16 H=1024). gpu-check runs these in its persistent stage.
ON_CHIP_CASES = [("LSTM", torch.bfloat16, SHAPES[0]), ("GRU", torch.bfloat16, SHAPES[0]),
                 ("RNN_TANH", torch.bfloat16, SHAPES[0]), ("LSTM", torch.float32, SHAPES[0]),
                 ("GRU", torch.float32, SHAPES[0]), ("LSTM", torch.bfloat16, SHAPES[1]),
                 ("GRU", torch.bfloat16, SHAPES[1])]
if DRY:
    ON_CHIP_CASES = [("LSTM", torch.float32, (3, 37, 7, {}, False)), ("GRU", torch.float16, (3, 37, 7, {}, False)),
                     ("RNN_TANH", torch.float32, (4, 8, 5, dict(num_layers=2, bidirectional=True), True))]


@pytest.mark.parametrize("mode, dtype, shape", [
    pytest.param(*case, id=f"{case[0]}-{str(case[1]).split('.')[-1]}-{shape_id(case[2])}") for case in ON_CHIP_CASES])
def test_w_on_chip_against_cudnn(mode, dtype, shape, monkeypatch):
    """The persistent strategy with W_hh on chip against float64 and cuDNN; both kernels must have kept it there
    (bf16 and fp32 slices fit the H100/H200's shared memory at these shapes: 160 KB at most)."""
    from fusedrnn.strategies import persistent

    monkeypatch.setattr(persistent, "W_ON_CHIP", True)
    monkeypatch.setattr(persistent.STRATEGY, "w_hh_placement", {})
    if DRY:  # one program per tile in the interpreter: one launch per step
        monkeypatch.setattr(persistent, "INTERPRETER_PROGRAMS", 1 << 20)
    check_layer_against_cudnn("triton-persistent", mode, dtype, shape, False, monkeypatch)
    assert persistent.STRATEGY.w_hh_placement == {"forward_kernel": "on chip", "backward_kernel": "on chip"}


@pytest.mark.parametrize("mode", GATED_MODES)
def test_tf32x3_within_cudnn_error(mode, monkeypatch):
    """float32 products in tf32x3 (FUSEDRNN_TF32X3) against cuDNN's TF32: no error above cuDNN's own, at the
    shape where TF32 in the kernel gave the h0 gradient 4.2x cuDNN's error (H200, 2026-12-04). The interpreter
    computes float32 exactly and its yardstick is torch's CPU float32, so the dry run keeps the usual 4x."""
    from fusedrnn.strategies import driver

    monkeypatch.setattr(driver, "TF32X3", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    check_layer_against_cudnn("triton-persistent", mode, torch.float32, SHAPES[-1], False, monkeypatch,
                              ratio=4.0 if DRY else 1.0)


def check_layer_against_cudnn(backend, mode, dtype, shape, direct_launch, monkeypatch, ratio=4.0):
    from fusedrnn.cells import REGISTRY
    from fusedrnn.strategies import launch

    monkeypatch.setattr(launch, "DIRECT_LAUNCH", direct_launch)
    B, H, T, extra, packed = shape
    torch.manual_seed(B * H + T)
    extra = {**extra, **REGISTRY[mode].options}
    reference = REGISTRY[mode].layer(H, H, device=DEVICE, dtype=torch.float64, **extra)
    cudnn = REGISTRY[mode].layer(H, H, device=DEVICE, dtype=dtype, **extra)
    fused = fusedrnn.nn.FUSED_LAYERS[mode](H, H, backend=backend, device=DEVICE, dtype=dtype, **extra)
    cudnn.load_state_dict(reference.state_dict())
    fused.load_state_dict(reference.state_dict())
    directions = 2 if reference.bidirectional else 1
    x64 = torch.randn((B, T, H) if reference.batch_first else (T, B, H), device=DEVICE, dtype=torch.float64)
    states64 = [
        torch.randn(reference.num_layers * directions, B, H, device=DEVICE, dtype=torch.float64)
        for _ in range(2 if mode == "LSTM" else 1)
    ]
    lengths = None
    if packed:
        lengths = torch.randint(1, T + 1, (B,)).tolist()
        lengths[0] = T
    n_out = 1 + len(states64)
    # The float64 reference, with random upstream gradients on every output.
    x = x64.clone().requires_grad_()
    states = [s.clone().requires_grad_() for s in states64]
    hx = tuple(states) if mode == "LSTM" else states[0]
    out = canonical(reference(make_input(x, batch_first=reference.batch_first, lengths=lengths), hx), reference.batch_first)
    upstream = [torch.randn_like(o) for o in out]
    expected = out + list(torch.autograd.grad(out, [x, *states, *reference.parameters()], upstream))

    got = outputs_and_grads(fused, dtype, x64, states64, upstream, lengths)
    theirs = outputs_and_grads(cudnn, dtype, x64, states64, upstream, lengths)
    names = ["output", "h_n", "c_n"][:n_out] + ["input"] + [f"hx[{k}]" for k in range(len(states64))]
    names += [n for n, _ in reference.named_parameters()]
    assert_within_torch_error(names, got, theirs, expected, dtype, ratio)


@pytest.mark.parametrize("backend", TRITON_BACKENDS)
@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("dtype", DTYPES[:2], ids=str)
def test_cell_against_torch(backend, mode, dtype):
    torch.manual_seed(0)
    I, H, B = (5, 37, 3) if DRY else (512, 1024, 64)
    reference = getattr(nn, mode + "Cell")(I, H, device=DEVICE, dtype=torch.float64)
    fused = getattr(fusedrnn, mode + "Cell")(I, H, backend=backend, device=DEVICE, dtype=dtype)
    torch_cell = getattr(nn, mode + "Cell")(I, H, device=DEVICE, dtype=dtype)
    fused.load_state_dict(reference.state_dict())
    torch_cell.load_state_dict(reference.state_dict())
    x = torch.randn(B, I, device=DEVICE, dtype=torch.float64)
    states = [torch.randn(B, H, device=DEVICE, dtype=torch.float64) for _ in range(2 if mode == "LSTM" else 1)]

    def run(module, dt):
        cast = tuple(s.to(dt) for s in states)
        out = module(x.to(dt), cast if mode == "LSTM" else cast[0])
        return list(out) if isinstance(out, tuple) else [out]

    assert_within_torch_error(["h", "c"], run(fused, dtype), run(torch_cell, dtype), run(reference, torch.float64), dtype)


@pytest.mark.skipif(DRY, reason="auto picks torch on the CPU")
def test_auto_backend_runs_what_the_table_says_for_this_card(monkeypatch):
    """auto on CUDA runs the fused kernels where the committed dispatch table picks a Triton strategy for this
    GPU model and shape, and torch's (cuDNN) where it picks torch: the H100's table is all torch, the H200's
    picks the persistent strategy at small B and H in float32."""
    from fusedrnn.strategies import dispatch

    monkeypatch.delenv("FUSEDRNN_BACKEND", raising=False)
    calls = []
    import fusedrnn.nn.rnn as rnn_module

    real = rnn_module.fused_rnn_forward
    monkeypatch.setattr(rnn_module, "fused_rnn_forward", lambda *a: calls.append(1) or real(*a))
    fusedrnn.LSTM(8, 8).cuda()(torch.randn(3, 2, 8, device="cuda"))
    picked = dispatch.lookup(torch.cuda.get_device_name(), "sequence", "LSTM", torch.float32, 2, 8)
    assert calls == ([] if picked == "torch" else [1]), picked


@pytest.mark.skipif(DRY, reason="the autotuner measures with CUDA events")
@pytest.mark.parametrize("kind", ["sequence", "step"])
def test_autotuner_measures_on_this_card(monkeypatch, tmp_path, kind):
    from fusedrnn.strategies import NAMES, autotune

    monkeypatch.setattr(autotune, "_choices", {})
    monkeypatch.setattr(autotune, "_loaded", False)
    monkeypatch.setattr(autotune, "_forced", True)
    monkeypatch.setenv("FUSEDRNN_AUTOTUNE_CACHE", str(tmp_path / "choices.json"))
    picked = autotune.choice(torch.cuda.get_device_name(), kind, "LSTM", torch.bfloat16, 32, 256)
    assert picked in ("torch", *NAMES)
    lstm = fusedrnn.LSTM(256, 256, device="cuda", dtype=torch.bfloat16)  # auto, now the tuned choice
    twin = nn.LSTM(256, 256, device="cuda", dtype=torch.bfloat16)
    twin.load_state_dict(lstm.state_dict())
    x = torch.randn(16, 32, 256, device="cuda", dtype=torch.bfloat16)
    assert (lstm(x)[0].float() - twin(x)[0].float()).abs().max() < 0.05


@pytest.mark.parametrize("backend", TRITON_BACKENDS)
@pytest.mark.parametrize("mode", GATED_MODES)
def test_float64_on_the_gpu(backend, mode):
    """float64 runs each strategy's float64 GEMM (in the kernel for fusedstep and persistent; auto never
    picks those for float64 until this passes on a GPU): against torch.nn in float64."""
    torch.manual_seed(0)
    fused = getattr(fusedrnn, mode)(24, 40, num_layers=2, bidirectional=True, backend=backend, device=DEVICE,
                                    dtype=torch.float64)
    twin = getattr(nn, mode)(24, 40, num_layers=2, bidirectional=True, device=DEVICE, dtype=torch.float64)
    twin.load_state_dict(fused.state_dict())
    x = torch.randn(9, 5, 24, device=DEVICE, dtype=torch.float64, requires_grad=True)
    got, want = canonical(fused(x)), canonical(twin(x))
    upstream = [torch.randn_like(t) for t in got]
    got += list(torch.autograd.grad(got, [x, *fused.parameters()], upstream))
    want += list(torch.autograd.grad(want, [x, *twin.parameters()], upstream))
    for g, w in zip(got, want):
        assert compare(g, w, torch.float64).ok


@pytest.mark.parametrize("mode", GATED_MODES)  # the gated cells only: gpu-check's time for these tests is short
def test_cell_step_in_float64_on_the_gpu(mode):
    """The cells' one-launch step in float64 (both GEMMs in the kernel, in float64: what any Triton backend,
    auto's float64 fallback included, runs for a cell) against torch.nn's cell in float64, every gradient."""
    torch.manual_seed(0)
    options = REGISTRY[mode].options
    fused = FUSED_CELLS[mode](24, 40, backend="triton", device=DEVICE, dtype=torch.float64, **options)
    twin = REGISTRY[mode].cell(24, 40, device=DEVICE, dtype=torch.float64, **options)
    twin.load_state_dict(fused.state_dict())
    x = torch.randn(5, 24, device=DEVICE, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(5, 40, device=DEVICE, dtype=torch.float64, requires_grad=True)
              for _ in range(REGISTRY[mode].states)]

    def run(module):
        out = module(x, tuple(states) if len(states) == 2 else states[0])
        return list(out) if isinstance(out, tuple) else [out]

    got, want = run(fused), run(twin)
    upstream = [torch.randn_like(t) for t in got]
    got += list(torch.autograd.grad(got, [x, *states, *fused.parameters()], upstream))
    want += list(torch.autograd.grad(want, [x, *states, *twin.parameters()], upstream))
    for g, w in zip(got, want):
        assert compare(g, w, torch.float64).ok


def check_compiled_against_float64(layer, monkeypatch):
    """A packed 2-layer bidirectional step of a layer with regularisers, compiled, against the float64 reference
    on the same masks (drawn on the GPU), every gradient; float32 with exact-rounded products."""
    from test_regularizers import check_against_reference

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    layer = layer.to(DEVICE)
    if DRY:
        check_against_reference(layer)
    else:
        check_against_reference(layer, T=40, lengths=(40, 17, 33, 1, 25, 40, 9))


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("backend", TRITON_BACKENDS)
def test_regularisers_against_float64(backend, mode, monkeypatch):
    """weight_drop and recurrent_dropout, in training."""
    from test_regularizers import fused_layer

    check_compiled_against_float64(fused_layer(mode, backend, weight_drop=0.25, recurrent_dropout=0.25), monkeypatch)


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("backend", TRITON_BACKENDS)
def test_layer_norm_against_float64(backend, mode, monkeypatch):
    """layer_norm (whole-row tiles), the normalisations' parameters' gradients too."""
    from test_layer_norm import normed_layer

    check_compiled_against_float64(normed_layer(mode, backend), monkeypatch)


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("backend", TRITON_BACKENDS)
def test_zoneout_against_float64(backend, mode, monkeypatch):
    """zoneout in training, then at evaluation against the reference's expectation."""
    from test_regularizers import fused_layer

    layer = fused_layer(mode, backend, zoneout=(0.2, 0.5) if mode == "LSTM" else 0.25)
    for training in (True, False):
        check_compiled_against_float64(layer.train(training), monkeypatch)
