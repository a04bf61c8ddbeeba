"""Dispatch: which implementation runs for each backend choice and device."""

import pytest
import torch
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
