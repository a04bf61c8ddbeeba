"""Dispatch: which implementation runs for each backend choice and device."""

from types import SimpleNamespace

import pytest
import torch
from helpers import GATED_MODES
from torch import nn

import fusedrnn
from fusedrnn import _backend


def test_auto_on_cpu_is_torchs_own_code(monkeypatch):
    monkeypatch.delenv("FUSEDRNN_BACKEND", raising=False)
    fused = fusedrnn.LSTM(5, 4, num_layers=2, bidirectional=True)
    twin = nn.LSTM(5, 4, num_layers=2, bidirectional=True)
    twin.load_state_dict(fused.state_dict())
    x = torch.randn(7, 3, 5)
    out, (h, c) = fused(x)
    want, (wh, wc) = twin(x)
    assert torch.equal(out, want) and torch.equal(h, wh) and torch.equal(c, wc)


def test_resolve_rules(monkeypatch):
    cpu = torch.empty(1)
    monkeypatch.delenv("FUSEDRNN_BACKEND", raising=False)
    assert _backend.resolve(None, cpu) == "torch"
    assert _backend.resolve("auto", cpu) == "torch"
    assert _backend.resolve("torch", cpu) == "torch"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _backend.resolve("triton", cpu) == "triton"
    monkeypatch.setenv("FUSEDRNN_BACKEND", "triton")
    assert _backend.resolve(None, cpu) == "triton"
    assert _backend.resolve("torch", cpu) == "torch"  # an explicit argument beats the environment


def test_triton_on_cpu_without_interpreter_says_how(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    lstm = fusedrnn.LSTM(5, 4, backend="triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        lstm(torch.randn(3, 2, 5))


def test_environment_variable_selects_the_kernels(monkeypatch):
    monkeypatch.setenv("FUSEDRNN_BACKEND", "triton")
    calls = []
    import fusedrnn.nn.rnn as rnn_module

    real = rnn_module.fused_rnn_forward
    monkeypatch.setattr(rnn_module, "fused_rnn_forward", lambda *a: calls.append(1) or real(*a))
    fusedrnn.GRU(5, 4)(torch.randn(3, 2, 5))
    assert calls == [1]


@pytest.mark.parametrize("gpu, kind, mode, dtype, batch, hidden, picked", [
    # Measured on the GPU model (benchmarks/results): the fastest correct implementation at the nearest point.
    ("NVIDIA H200", "sequence", "LSTM", torch.bfloat16, 64, 512, "triton-persistent"),
    ("NVIDIA H200", "sequence", "LSTM", torch.bfloat16, 48, 400, "triton-persistent"),  # nearest: 64 x 512
    ("NVIDIA H200", "sequence", "LSTM", torch.bfloat16, 256, 1024, "torch"),
    ("NVIDIA H100 80GB HBM3", "step", "GRU", torch.float32, 64, 512, "torch"),
    # Nothing measured for this GPU model, cell or dtype: torch's own (cuDNN), never a strategy slower than it.
    ("Some Future GPU", "sequence", "LSTM", torch.bfloat16, 64, 512, "torch"),
    ("Some Future GPU", "sequence", "GRU", torch.float32, 64, 512, "torch"),
    ("NVIDIA H200", "sequence", "GRU", torch.bfloat16, 64, 512, "torch"),
    ("NVIDIA H200", "sequence", "RNN_TANH", torch.float32, 64, 512, "torch"),
    ("NVIDIA H200", "sequence", "LSTM", torch.float64, 64, 512, "torch"),
])
def test_auto_picks_what_the_dispatch_table_measured(monkeypatch, gpu, kind, mode, dtype, batch, hidden, picked):
    monkeypatch.delenv("FUSEDRNN_BACKEND", raising=False)
    monkeypatch.delenv("FUSEDRNN_AUTOTUNE", raising=False)
    monkeypatch.setattr(_backend, "triton_available", lambda: True)
    monkeypatch.setattr(_backend, "gpu_name", lambda device: gpu)
    cuda_tensor = SimpleNamespace(device=torch.device("cuda"), dtype=dtype)
    assert _backend.resolve("auto", cuda_tensor, mode, kind, batch, hidden) == picked
    assert _backend.resolve("triton", cuda_tensor, mode, kind, batch, hidden) == "triton"
    assert _backend.resolve("auto", torch.zeros(1, dtype=dtype), mode, kind, batch, hidden) == "torch"


def test_dispatch_table_is_what_the_committed_results_say(tmp_path):
    """The committed table is the builder's output for the committed benchmark CSVs (nothing edited by hand)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from fusedrnn.strategies import dispatch

    root = Path(__file__).resolve().parents[1]
    csvs = sorted(str(p) for p in (root / "benchmarks" / "results").glob("*.csv"))
    rebuilt = tmp_path / "dispatch.json"
    subprocess.run([sys.executable, "benchmarks/dispatch_table.py", *csvs, "--out", str(rebuilt)], cwd=root,
                   check=True, capture_output=True)
    assert json.loads(rebuilt.read_text()) == json.loads(dispatch.TABLE.read_text())


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("how", ["argument", "environment"])
def test_fusedstep_backend_runs_the_gemm_in_the_kernel(monkeypatch, mode, how):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from fusedrnn.strategies import single_step, tiles

    single_step._forward_launch.cache_clear()  # a step's tiles are chosen once per shape: choose them here
    strategies = []
    real = tiles.choose
    monkeypatch.setattr(tiles, "choose", lambda *a, **k: strategies.append(a[0]) or real(*a, **k))
    if how == "environment":
        monkeypatch.setenv("FUSEDRNN_BACKEND", "triton-fusedstep")
    rnn = getattr(fusedrnn, mode)(5, 4, backend="triton-fusedstep" if how == "argument" else None)
    x = torch.randn(3, 2, 5, requires_grad=True)
    rnn(x)[0].sum().backward()
    getattr(fusedrnn, mode + "Cell")(5, 4, backend="triton-fusedstep")(x[0])
    # the layer's forward and backward; the cell runs the one-launch step whatever its backend
    assert strategies == ["triton-fusedstep"] * 2 + [tiles.SINGLE_STEP]


@pytest.mark.parametrize("module", ["LSTM", "GRUCell"])
def test_float32_products_may_use_tf32_as_the_torch_counterpart_does(monkeypatch, module):
    """A sequence module follows torch.backends.cudnn.allow_tf32 (what nn.LSTM/GRU obey), a cell
    torch.backends.cuda.matmul.allow_tf32 (what nn.LSTMCell/GRUCell obey)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from fusedrnn.strategies import driver

    seen = []
    real = driver.gemm_flags
    monkeypatch.setattr(driver, "gemm_flags", lambda *a: seen.append(a[1]) or real(*a))
    rnn = getattr(fusedrnn, module)(5, 4, backend="triton-fusedstep")
    x = torch.randn(2, 3, 5) if module == "LSTM" else torch.randn(3, 5)
    flags = torch.backends.cudnn if module == "LSTM" else torch.backends.cuda.matmul
    before = flags.allow_tf32
    try:
        for allowed in (True, False):
            flags.allow_tf32 = allowed
            rnn(x)
            assert seen[-1] is allowed
    finally:
        flags.allow_tf32 = before
    precision = {dtype: driver.gemm_flags(dtype, True)["DOT_PRECISION"] for dtype in (torch.float32, torch.bfloat16, torch.float64)}
    assert precision == {torch.float32: "tf32", torch.bfloat16: "ieee", torch.float64: "ieee"}
    monkeypatch.setattr(driver, "TF32X3", True)  # FUSEDRNN_TF32X3: three TF32 products where TF32 would be used
    assert driver.gemm_flags(torch.float32, True)["DOT_PRECISION"] == "tf32x3"
    assert driver.gemm_flags(torch.float32, False)["DOT_PRECISION"] == "ieee"
