"""Who is compared: each implementation behind one calling convention, built from the same weights.

A provider builds a `Runner` for a case from the case's template module (a torch.nn module holding the
shared weights, in the case's dtype and device). A runner maps (x, states) to the flat list of outputs
(output, h_n[, c_n] for a sequence; h[, c] for a step) and names its parameters as torch does, so every
gradient is compared name by name. Tests and users can add a provider with `register`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fusedrnn import _backend, strategies
from fusedrnn.bench import flashrnn_adapter
from fusedrnn.bench.cell_loop import CellLoop, cell_step
from fusedrnn.bench.grid import Case
from fusedrnn.bench.workload import FUSED_CLASSES, TORCH_CLASSES, copy_of

# Every fused strategy (its label) and the backend= value that forces it, from the strategy registry.
FUSED_STRATEGIES = {label: name for name, label in strategies.LABELS.items()}


@dataclass
class Runner:
    forward: Callable[[torch.Tensor, tuple[torch.Tensor, ...]], list[torch.Tensor]]
    params: dict[str, torch.Tensor]


def _nothing(*_) -> None:
    return None


def _always(_device) -> bool:
    return True


def _never(_device) -> bool:
    return False


@dataclass
class Provider:
    name: str
    about: str
    kinds: tuple[str, ...]  # "sequence" and/or "step"
    build: Callable[[Case, nn.Module], Runner]
    on_by_default: Callable[[torch.device], bool] = _always
    unavailable: Callable[[torch.device], str | None] = _nothing  # why it cannot run on this device at all
    unsupported: Callable[[Case, torch.device], str | None] = _nothing  # why it cannot run this case
    interpreted: Callable[[torch.device], bool] = _never  # runs in Triton's interpreter on this device


PROVIDERS: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    PROVIDERS[provider.name] = provider
    return provider


def baseline_name(kind: str, device: torch.device) -> str:
    """The yardstick of speedups and error ratios: torch.nn's module (cuDNN for sequences on CUDA)."""
    return "cudnn" if kind == "sequence" and device.type == "cuda" else "torch"


def _flatten(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for item in result for t in _flatten(item)]


def module_runner(module: nn.Module) -> Runner:
    """A runner for any module with torch.nn's calling convention (LSTM, GRU, their cells, fused twins)."""
    carries_cell_state = isinstance(module, (nn.LSTM, nn.LSTMCell))

    def forward(x, states):
        return _flatten(module(x, states if carries_cell_state else states[0]))

    return Runner(forward, dict(module.named_parameters()))


def _torch_build(case: Case, template: nn.Module) -> Runner:
    return module_runner(copy_of(template, TORCH_CLASSES[case.kind, case.cell], case))


def _fused_build(backend: str):
    def build(case: Case, template: nn.Module) -> Runner:
        return module_runner(copy_of(template, FUSED_CLASSES[case.kind, case.cell], case, backend=backend))

    return build


def _triton_unavailable(device: torch.device) -> str | None:
    if not _backend.triton_available():
        return "triton is not installed"
    if device.type != "cuda" and not _backend.interpreter_enabled():
        return "CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before triton is imported"
    return None


def _on_cpu(device: torch.device) -> bool:
    return device.type == "cpu"


def _on_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def _cell_loop_build(case: Case, template: nn.Module) -> Runner:
    loop = CellLoop(template)
    return Runner(loop.forward, loop.named_torch_parameters())


def _compiled_cell_loop_build(case: Case, template: nn.Module) -> Runner:
    # A fresh compile cache per case: past dynamo's recompile limit a function silently runs eagerly,
    # which would time the plain loop under this provider's name.
    torch._dynamo.reset()
    loop = CellLoop(template, step=torch.compile(cell_step))
    return Runner(loop.forward, loop.named_torch_parameters())


def _flashrnn_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "needs a CUDA GPU"
    if flashrnn_adapter.flashrnn_function() is None:
        return "not installed (pip install flashrnn)"
    return None


def _flashrnn_unsupported(case: Case, device: torch.device) -> str | None:
    if case.cell != "LSTM":
        return "only its LSTM is mapped to torch's weights (its GRU splits gates and biases differently)"
    if case.layers != 1 or case.bidirectional:
        return "only single-layer unidirectional cases are mapped"
    return None


def _flashrnn_build(case: Case, template: nn.Module) -> Runner:
    module = flashrnn_adapter.FlashRNNLSTM(template)
    return Runner(module.forward, dict(module.named_parameters()))


for _strategy, _backend_value in FUSED_STRATEGIES.items():
    register(Provider(
        f"fusedrnn-{_strategy}",
        f"fusedrnn.LSTM/GRU and cells with backend={_backend_value!r} (the {_strategy} Triton kernels)",
        ("sequence", "step"),
        _fused_build(_backend_value),
        unavailable=_triton_unavailable,
        interpreted=_on_cpu,
    ))

register(Provider(
    "cudnn", "torch.nn.LSTM / nn.GRU on CUDA (cuDNN)", ("sequence",), _torch_build,
    on_by_default=_on_cuda,
    unavailable=lambda device: None if device.type == "cuda" else "needs a CUDA GPU",
))
register(Provider(
    "torch", "torch.nn modules on CPU; torch.nn.LSTMCell / GRUCell for single steps on any device",
    ("sequence", "step"), _torch_build,
    unsupported=lambda case, device: (
        "on CUDA torch.nn.LSTM is the cudnn provider" if case.kind == "sequence" and device.type == "cuda" else None
    ),
))
register(Provider(
    "fusedrnn-torch", "fusedrnn modules with backend='torch' (torch's own code behind the fused API)",
    ("sequence", "step"), _fused_build("torch"), on_by_default=_on_cpu,
))
register(Provider(
    "cell-loop", "a Python loop over nn.LSTMCell / nn.GRUCell", ("sequence",), _cell_loop_build,
))
register(Provider(
    "compiled-cell-loop", "the cell loop with each step compiled by torch.compile", ("sequence",),
    _compiled_cell_loop_build, on_by_default=_on_cuda,
))
register(Provider(
    "flashrnn", "FlashRNN's fused CUDA LSTM (the flashrnn package)", ("sequence",), _flashrnn_build,
    unavailable=_flashrnn_unavailable, unsupported=_flashrnn_unsupported,
))
