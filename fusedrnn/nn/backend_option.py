"""What every fused module adds to its torch parent: the `backend=` keyword, and TorchScript's way back."""

from torch import nn

from fusedrnn._backend import check_backend
from fusedrnn.nn.twin import twin


class BackendOption:
    """Mixin placed before a torch module class: takes `backend` and shows it in repr when set.

    It also rejects sizes <= 0, which torch's RNN modules reject and its cells let through.
    """

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("input_size", "hidden_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than zero")
        self.backend = check_backend(backend)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", backend={self.backend!r}" if self.backend is not None else "")

    def __prepare_scriptable__(self) -> nn.Module:
        """What torch.jit.script compiles in place of this module: TorchScript cannot run the Triton kernels,
        so it gets the torch module this one extends, sharing its parameters (torch's implementation)."""
        torch_class = next(c for c in type(self).__mro__ if c.__module__.startswith("torch.nn."))
        plain = twin(self, torch_class)
        del plain.backend
        return plain
