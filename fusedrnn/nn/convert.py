"""`convert(model)`: swap the torch RNN modules of a model for the fused ones, in place, weights kept."""

from torch import nn

from fusedrnn._backend import check_backend
from fusedrnn.cells import REGISTRY
from fusedrnn.nn.cell import FUSED_CELLS
from fusedrnn.nn.regularizers import check_probability
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


def _swap(module: nn.Module, fused_class, backend: str | None, regularizers: dict) -> nn.Module:
    """The fused twin of `module` (see fusedrnn.nn.twin), with the regularisers given (layers only)."""
    fused = twin(module, fused_class)
    fused.backend = backend if backend is not None else getattr(module, "backend", None)
    if regularizers and isinstance(fused, nn.RNNBase):
        fused.set_regularizers(**regularizers)
    return fused


def _report(module: nn.Module, subclasses: bool, path: str = "") -> list[str]:
    """One line per RNN module in `module` (itself included): what convert swaps, and what it leaves alone
    and why."""
    name = path or "(the model itself)"
    if type(module) in FUSED.values():
        return [f"kept {name}: already fused ({type(module).__name__})"]
    fused_class = _fused_class(module, subclasses)
    if fused_class is not None:
        return [f"swapped {name}: {type(module).__module__}.{type(module).__name__} -> fusedrnn.{fused_class.__name__}"]
    torch_parent = next((c for c in FUSED if isinstance(module, c)), None)
    if torch_parent is not None:
        return [f"left {name} alone: {type(module).__name__} subclasses nn.{torch_parent.__name__} and may override "
                "forward; pass subclasses=True to replace it by the plain fused class"]
    lines = []
    for child_name, child in module.named_children():
        lines += _report(child, subclasses, f"{path}.{child_name}" if path else child_name)
    return lines


def convert(module: nn.Module, backend: str | None = None, subclasses: bool = False, verbose: bool = False,
            weight_drop: float | None = None, recurrent_dropout: float | None = None,
            zoneout: float | tuple[float, float] | None = None) -> nn.Module:
    """Replace every `nn.LSTM`, `nn.GRU`, `nn.RNN` and their cells in `module` (itself included,
    at any depth: Sequential, ModuleList, ModuleDict, attributes) by its fused twin, in place.

    Weights (the same Parameter objects), device, dtype, training mode and requires_grad are kept, so
    the state dict still loads into the original model. Subclasses of the torch classes may override
    forward and are left alone unless `subclasses=True` (which replaces them by the plain fused class).
    `backend` sets the fused modules' backend (None: FUSEDRNN_BACKEND or "auto"); `weight_drop`,
    `recurrent_dropout` and `zoneout` the layers' regularisers (None: as the module had them, else off;
    fusedrnn/nn/regularizers.py; the cells take none). `verbose=True` prints
    one line per RNN module found: swapped, already fused, or left alone and why. Returns the module,
    which is a new object only when `module` itself is an RNN.

        >>> model = fusedrnn.convert(model, verbose=True)
        swapped encoder: torch.nn.modules.rnn.LSTM -> fusedrnn.LSTM
    """
    check_backend(backend)
    given = dict(weight_drop=weight_drop, recurrent_dropout=recurrent_dropout, zoneout=zoneout)
    return _convert(module, backend, subclasses, verbose, {k: v for k, v in given.items() if v is not None})


def _convert(module: nn.Module, backend: str | None, subclasses: bool, verbose: bool, regularizers: dict):
    for name in ("weight_drop", "recurrent_dropout"):
        if name in regularizers:
            check_probability(name, regularizers[name])
    if verbose:
        print("\n".join(_report(module, subclasses) or ["fusedrnn.convert: no RNN module found"]))
    fused_class = _fused_class(module, subclasses)
    if fused_class is not None:
        return _swap(module, fused_class, backend, regularizers)
    for name, child in module.named_children():
        converted = _convert(child, backend, subclasses, False, regularizers)
        if converted is not child:
            setattr(module, name, converted)
    return module
