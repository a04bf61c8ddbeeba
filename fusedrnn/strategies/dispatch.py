"""What `backend="auto"` runs on a CUDA GPU: the committed dispatch table, measured on real GPUs.

`dispatch.json` (beside this file) is written by `benchmarks/dispatch_table.py` from the benchmark CSVs
that `make gpu-check` commits under benchmarks/results/: per GPU model, kind (a whole sequence or a single
cell step), cell, dtype and measured (batch, hidden) point, the fastest implementation whose gradient
check passed in that run: a Triton strategy's backend value, or "torch" when torch's own (cuDNN, cuBLAS)
was fastest. `auto` takes the measured point nearest to the call's (batch, hidden) on the same GPU model,
cell and dtype (distance in log2 of each); where the table has nothing for them (another GPU model, a dtype
or cell not measured on it, float64), torch's own: on every GPU measured so far the per-step strategies ran
at 0.3-0.6x cuDNN, so a fused default where nothing was measured would more likely halve a user's speed
than raise it. The opt-in autotuner (fusedrnn/strategies/autotune.py) measures on the user's own card instead.
"""

import functools
import json
import math
from pathlib import Path

import torch

TABLE = Path(__file__).with_name("dispatch.json")

UNMEASURED = "torch"  # what auto runs where the table has nothing (see above)
# The table measured plain layers. recurrent_dropout, zoneout and layer_norm change the kernels (compile-time
# flags), which no GPU run has checked yet: until one does (tests/test_gpu.py's regulariser tests in gpu-check),
# auto runs such a layer with torch's implementation (a loop of torch ops), and says so on a GPU.
REGULARISED_KERNELS_CHECKED_ON_GPU = False


@functools.lru_cache(maxsize=1)
def entries() -> tuple[dict, ...]:
    if not TABLE.exists():
        return ()
    return tuple(json.loads(TABLE.read_text())["entries"])


@functools.lru_cache(maxsize=4096)
def lookup(gpu: str, kind: str, mode: str, dtype: torch.dtype, batch: int, hidden: int) -> str:
    """The backend value `auto` runs for this call: "torch" or a Triton strategy."""
    return choose(entries(), gpu, kind, mode, dtype, batch, hidden)


def choose(table: tuple[dict, ...], gpu: str, kind: str, mode: str, dtype: torch.dtype, batch: int,
           hidden: int) -> str:
    """What `lookup` picks from the given table entries (the committed table's, or a test's)."""
    dtype_name = str(dtype).removeprefix("torch.")
    measured = [e for e in table
                if (e["gpu"], e["kind"], e["cell"], e["dtype"]) == (gpu, kind, mode, dtype_name)]
    if not measured:
        return UNMEASURED

    def distance(entry: dict) -> float:
        return (math.log2(max(batch, 1) / entry["batch"]) ** 2 + math.log2(max(hidden, 1) / entry["hidden"]) ** 2)

    return min(measured, key=distance)["backend"]
