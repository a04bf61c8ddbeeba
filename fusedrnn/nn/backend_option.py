"""The `backend=` keyword that every fused module adds to its torch parent's constructor."""

from fusedrnn._backend import check_backend


class BackendOption:
    """Mixin placed before a torch module class: takes `backend` and shows it in repr when set."""

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = check_backend(backend)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", backend={self.backend!r}" if self.backend is not None else "")
