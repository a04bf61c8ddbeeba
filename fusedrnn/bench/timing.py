"""Wall time and peak memory of one call, measured the same way for every provider.

On CUDA each call is timed with CUDA events after a synchronize, so a launch-bound implementation pays
for its launches; on CPU with time.perf_counter. Calls rotate over a few pre-drawn inputs so that no
provider is flattered by finding the same data in cache. We report the median with p20 and p80. As
timeit does, the garbage collector is paused while timing, so that no provider pays for the garbage of
the one before.
"""

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    repeats: int


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(call: Callable, inputs: Sequence, warmup: int, repeats: int, device: torch.device) -> Timing:
    """Run call(inputs[k % len(inputs)]) `warmup` times untimed, then `repeats` times timed."""
    for k in range(warmup):
        call(inputs[k % len(inputs)])
    _synchronize(device)
    gc.collect()
    gc.disable()
    try:
        times_ms = _timed_calls(call, inputs, repeats, device)
    finally:
        gc.enable()
    quantiles = torch.tensor(times_ms, dtype=torch.float64).quantile(torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64))
    median, p20, p80 = (float(q) for q in quantiles)
    return Timing(median, p20, p80, repeats)


def _timed_calls(call: Callable, inputs: Sequence, repeats: int, device: torch.device) -> list[float]:
    times_ms = []
    for k in range(repeats):
        args = inputs[k % len(inputs)]
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            call(args)
            end.record()
            end.synchronize()
            times_ms.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            call(args)
            times_ms.append((time.perf_counter() - begin) * 1e3)
    return times_ms


def peak_memory_mb(call: Callable, args, device: torch.device) -> float:
    """Peak memory allocated by call(args) beyond what was allocated before it (weights and inputs are
    excluded: every provider holds its own copy). NaN off CUDA, where torch keeps no such count."""
    if device.type != "cuda":
        return math.nan
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call(args)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20
