"""The opt-in autotuner's bookkeeping: one measurement per bucket, remembered in memory and on disk, and
the committed table while a measurement cannot run. Its measurement itself needs a GPU (tests/test_gpu.py)."""

import json

import pytest
import torch

from fusedrnn.strategies import autotune, dispatch


@pytest.fixture
def tuner(monkeypatch, tmp_path):
    """A fresh autotuner whose measurement is recorded, with its cache file in tmp_path."""
    monkeypatch.setattr(autotune, "_choices", {})
    monkeypatch.setattr(autotune, "_loaded", False)
    monkeypatch.setenv("FUSEDRNN_AUTOTUNE_CACHE", str(tmp_path / "choices.json"))
    measured = []

    def measure(kind, mode, dtype, batch, hidden):
        measured.append((kind, mode, dtype, batch, hidden))
        return "triton-persistent"

    monkeypatch.setattr(autotune, "measure", measure)
    return measured


def test_measures_once_per_bucket_and_rounds_shapes_up(tuner):
    assert autotune.choice("GPU", "sequence", "LSTM", torch.bfloat16, 48, 500) == "triton-persistent"
    assert autotune.choice("GPU", "sequence", "LSTM", torch.bfloat16, 64, 512) == "triton-persistent"  # same bucket
    autotune.choice("GPU", "sequence", "LSTM", torch.bfloat16, 65, 512)  # a new bucket
    assert tuner == [("sequence", "LSTM", torch.bfloat16, 64, 512), ("sequence", "LSTM", torch.bfloat16, 128, 512)]


def test_choices_persist_in_the_cache_file(tuner, tmp_path, monkeypatch):
    autotune.choice("GPU", "step", "GRU", torch.float32, 16, 256)
    saved = json.loads((tmp_path / "choices.json").read_text())
    assert list(saved.values()) == ["triton-persistent"]
    monkeypatch.setattr(autotune, "_choices", {})  # a new process: read back, nothing measured again
    monkeypatch.setattr(autotune, "_loaded", False)
    assert autotune.choice("GPU", "step", "GRU", torch.float32, 16, 256) == "triton-persistent"
    assert len(tuner) == 1


def test_while_capturing_a_graph_the_table_decides(tuner, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    got = autotune.choice("NVIDIA H200", "sequence", "LSTM", torch.bfloat16, 64, 512)
    assert got == dispatch.lookup("NVIDIA H200", "sequence", "LSTM", torch.bfloat16, 64, 512) and tuner == []


def test_switch(monkeypatch):
    monkeypatch.setattr(autotune, "_forced", None)
    monkeypatch.setenv("FUSEDRNN_AUTOTUNE", "1")
    assert autotune.enabled()
    autotune.enable(False)
    assert not autotune.enabled()
