"""`convert(model)`: swap the torch RNN modules of a model for the fused ones, in place, weights kept."""

from torch import nn

from fusedrnn._backend import check_backend
from fusedrnn.cells import REGISTRY
from fusedrnn.nn.cell import FUSED_CELLS
from fusedrnn.nn.rnn import FUSED_LAYERS
from fusedrnn.nn.twin import twin

# torch class -> its fused twin, for every registered cell.
FUSED = {entry.layer: FUSED_LAYERS[mode] for mode, entry in REGISTRY.items()}
FUSED.update({entry.cell: FUSED_CELLS[mode] for mode, entry in REGISTRY.items()})


def _fused_class(module: nn.Module, subclasses: bool):
    if type(module) in FUSED.values():
        return type(module)
    if type(module) in FUSED:
        return FUSED[type(module)]
    if subclasses:
        for torch_class, fused_class in FUSED.items():
            if isinstance(module, torch_class):
                return fused_class
    return None


def _swap(module: nn.Module, fused_class, backend: str | None) -> nn.Module:
    """The fused twin of `module` (see fusedrnn.nn.twin)."""
    fused = twin(module, fused_class)
    fused.backend = backend if backend is not None else getattr(module, "backend", None)
    return fused


def convert(module: nn.Module, backend: str | None = None, subclasses: bool = False) -> nn.Module:
    """Replace every `nn.LSTM`, `nn.GRU`, `nn.LSTMCell` and `nn.GRUCell` in `module` (itself included,
    at any depth: Sequential, ModuleList, ModuleDict, attributes) by its fused twin, in place.

    Weights (the same Parameter objects), device, dtype, training mode and requires_grad are kept, so
    the state dict still loads into the original model. Subclasses of the torch classes may override
    forward and are left alone unless `subclasses=True` (which replaces them by the plain fused class).
    `backend` sets the fused modules' backend (None: FUSEDRNN_BACKEND or "auto"). Returns the module,
    which is a new object only when `module` itself is an RNN.

        >>> model = fusedrnn.convert(model)
    """
    check_backend(backend)
    fused_class = _fused_class(module, subclasses)
    if fused_class is not None:
        return _swap(module, fused_class, backend)
    for name, child in module.named_children():
        converted = convert(child, backend, subclasses)
        if converted is not child:
            setattr(module, name, converted)
    return module
