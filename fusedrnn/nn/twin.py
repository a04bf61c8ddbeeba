"""A module of another class that shares a module's state: how `convert` turns torch modules into fused
ones, and how TorchScript gets the torch module back from a fused one."""

import copy

from torch import nn


def twin(module: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A `cls` sharing `module`'s parameters, buffers, hooks, mode and attributes.

    The Parameter objects themselves are shared, so an optimizer built before keeps working.
    """
    new = cls.__new__(cls)
    new.__dict__.update({k: copy.copy(v) if isinstance(v, (dict, list)) else v for k, v in module.__dict__.items()})
    if isinstance(new, nn.RNNBase):
        new._init_flat_weights()
    return new
