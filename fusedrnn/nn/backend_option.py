"""The `backend=` keyword that every fused module adds to its torch parent's constructor."""

from fusedrnn._backend import check_backend


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
