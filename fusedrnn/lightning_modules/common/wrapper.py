"""`NetWrapper`: the base of the models' LightningModules, each a thin wrapper (steps, metrics, optimizer)
around a plain network held as `self.net`.

Checkpoints written before the networks moved into `net` name their parameters without that prefix
("rnn.weight_ih_l0" for "net.rnn.weight_ih_l0"). `load_state_dict` reads them under the new names, so
they load wherever Lightning or `from_checkpoint` loads a state dict.
"""

import lightning.pytorch as pl
from torch import nn


class NetWrapper(pl.LightningModule):
    """A LightningModule whose network is the submodule `net` (the subclass builds it)."""

    net: nn.Module

    def load_state_dict(self, state_dict, *args, **kwargs):
        layers = {name for name, _ in self.net.named_children()}
        state_dict = {(f"net.{key}" if key.split(".", 1)[0] in layers else key): v for key, v in state_dict.items()}
        return super().load_state_dict(state_dict, *args, **kwargs)
