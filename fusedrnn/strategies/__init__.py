"""The ways of running a recurrence's time loop, one file each, and the registry keyed by backend value.

- `triton` (stepwise.py): per step a cuBLAS GEMM and one fused pointwise launch;
- `triton-fusedstep` (fusedstep.py): per step one launch that also does the recurrent GEMM;
- `triton-persistent` (persistent.py): one launch for all steps, a grid barrier between steps.
All launch the same two time-loop kernels (kernels.py) over a cell's step bodies; driver.py holds
what they share (buffers, the GEMMs after the loop): the forward and backward that fusedrnn/ops.py
registers as custom ops. Adding a strategy is one file defining `STRATEGY` plus one line here (and its
value in `fusedrnn._backend.Backend`).

Strategy files import Triton kernels, so they are imported on first use (see fusedrnn.cells).
"""

import importlib

REGISTRY: dict[str, str] = {  # backend value -> the file that defines STRATEGY
    "triton": "fusedrnn.strategies.stepwise",
    "triton-fusedstep": "fusedrnn.strategies.fusedstep",
    "triton-persistent": "fusedrnn.strategies.persistent",
}
NAMES = tuple(REGISTRY)
LABELS = {name: module.rsplit(".", 1)[-1] for name, module in REGISTRY.items()}  # "triton" -> "stepwise"


def strategy(name: str):
    """The strategy for a Triton backend value."""
    if name not in REGISTRY:
        raise ValueError(f"no Triton strategy {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(REGISTRY[name]).STRATEGY
