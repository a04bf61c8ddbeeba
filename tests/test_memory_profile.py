"""The allocator-trace replay of benchmarks/memory_profile.py (its GPU part runs in make gpu-check)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "memory_profile", Path(__file__).resolve().parents[1] / "benchmarks" / "memory_profile.py")
memory_profile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory_profile)

MB = 2**20


def event(action, addr, size, filename="/repo/fusedrnn/strategies/driver.py", line=1):
    return dict(action=action, addr=addr, size=size, frames=[
        {"filename": "/site-packages/torch/nn/functional.py", "line": 9, "name": "linear"},
        {"filename": filename, "line": line, "name": "forward"}])


def test_the_peak_and_what_is_alive_there():
    trace = [event("alloc", 1, 4 * MB), event("alloc", 2, 1 * MB), event("free_requested", 1, 4 * MB),
             event("free_completed", 1, 4 * MB), event("alloc", 3, 3 * MB, line=2), event("alloc", 4, 1 * MB),
             event("free_completed", 3, 3 * MB), event("free_completed", 77, 50 * MB)]
    peak, blocks = memory_profile.live_at_peak(trace)
    # 4+1 = 5 MB first; after the free 1+3+1 = 5 MB again (not above), so the first peak stands.
    assert peak == 5 * MB and [b["addr"] for b in blocks] == [1, 2]
    trace.insert(6, event("alloc", 5, 1))  # one byte more than 5 MB with 2, 3, 4 alive
    peak, blocks = memory_profile.live_at_peak(trace)
    assert peak == 5 * MB + 1 and [b["addr"] for b in blocks] == [3, 2, 4, 5]


def test_where_names_our_lines_before_torch_internals():
    assert memory_profile.where(event("alloc", 1, 1, line=42)) == "driver.py:42 forward"
    assert memory_profile.where(dict(action="alloc", addr=1, size=1)) == "(no frames)"
