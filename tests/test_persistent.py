"""The persistent strategy's own machinery: the grid barrier, its bounded wait, the co-residency fallback,
repeatability, program counts and CUDA-graph capture.

Its numbers against float64 are checked with every other strategy in test_recurrence.py (interpreter) and
test_gpu.py (GPU). Tests marked gpu run on a CUDA GPU (`pytest -m gpu`; GPU_CHECK_DRY=1 runs them in the
interpreter at tiny sizes); the others run in the interpreter on the CPU.
"""

import os

import pytest
import torch
import triton
import triton.language as tl
from helpers import GATED_MODES
from torch import nn

import fusedrnn
from fusedrnn.strategies import persistent, tiles
from fusedrnn.strategies.kernels import grid_barrier
from fusedrnn.testing import assert_close

DRY = os.environ.get("GPU_CHECK_DRY") == "1" and not torch.cuda.is_available()
GPU_DEVICE = "cpu" if DRY else "cuda"
gpu_or_dry = pytest.mark.skipif(not (torch.cuda.is_available() or DRY), reason="needs a CUDA GPU (or GPU_CHECK_DRY=1)")
gpu_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@triton.jit
def wait_at_barrier(sync_ptr, target, rounds, SPIN_LIMIT: tl.constexpr):
    """Meets the barrier `rounds` times, each time waiting for `target` arrivals more."""
    for k in range(rounds):
        grid_barrier(sync_ptr, (k + 1) * target, SPIN_LIMIT)


def run_barrier(programs: int, target: int, rounds: int, spin_limit: int, device) -> list[int]:
    sync = torch.zeros(2, dtype=torch.int32, device=device)
    wait_at_barrier[(programs,)](sync, target, rounds, spin_limit, **persistent.LAUNCH_OPTIONS)
    return sync.tolist()


def test_barrier_met_by_every_program_passes():
    # One program (the interpreter runs programs one after another): each barrier is met at once.
    assert run_barrier(1, 1, 5, 0, "cpu") == [5, 0]


def test_bounded_wait_gives_up_with_the_flag_set_instead_of_hanging():
    # A barrier waiting for a second program that never comes: the bounded wait ends and says so, and
    # the later barriers of the launch do not wait again.
    arrivals, gave_up = run_barrier(1, 2, 3, 50, "cpu")
    assert (arrivals, gave_up) == (3, 1)


def test_persistent_layer_raises_when_a_barrier_gave_up(monkeypatch):
    monkeypatch.setattr(persistent, "SPIN_LIMIT", 10)
    real = persistent.StepLauncher

    class StuckLauncher(real):  # the flag as a barrier that gave up leaves it
        def __call__(self, k_begin, k_end):
            super().__call__(k_begin, k_end)
            self.args["sync_ptr"][1] = 1

    monkeypatch.setattr(persistent, "StepLauncher", StuckLauncher)
    lstm = fusedrnn.LSTM(4, 8, backend="triton-persistent")
    with pytest.raises(RuntimeError, match="FUSEDRNN_SPIN_LIMIT"):
        lstm(torch.randn(3, 2, 4))


def test_the_tiles_host_arithmetic_is_tritons():
    """tiles' own cdiv and next_power_of_2 (Triton's are constexpr functions, slow to call from the host) give
    Triton's results."""
    assert all(tiles.next_power_of_2(n) == triton.next_power_of_2(n) for n in range(0, 5000))
    assert all(tiles.cdiv(a, b) == triton.cdiv(a, b) for a in range(0, 600) for b in range(1, 70))


def test_tiles_fit_the_multiprocessors():
    # The first shape whose tile count fits one program per multiprocessor; past the last, programs loop.
    assert tiles.choose("triton-persistent", 64, 512, torch.bfloat16, programs=132).count(64, 512) == 128
    assert tiles.choose("triton-persistent", 256, 1024, torch.bfloat16, programs=132).count(256, 1024) == 128
    many = tiles.choose("triton-persistent", 4096, 4096, torch.bfloat16, programs=132)
    assert (many.block_b, many.block_h) == tiles.PERSISTENT_SHAPES[-1]


# ---- The GPU-only decisions, on the CPU with a stand-in device (what a GPU run would otherwise be first to try) ----
H200 = {"multiprocessor_count": 132, "max_shared_mem": 232448, "max_num_regs": 65536}


def gpu_loop(B, H, dtype, **flags):
    """A forward time loop as the driver hands it over on a GPU (tensors are not needed to decide)."""
    from fusedrnn.strategies.kernels import forward_kernel
    from fusedrnn.strategies.launch import TimeLoop

    return TimeLoop(forward_kernel, {}, {"GATES": 4, "W_ON_CHIP": 0, **flags}, 8, B, H, dtype, torch.device("cuda"))


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """The persistent strategy believing it runs on an H200: no interpreter, its device properties, a record
    of what it launched (grid, tiles, W_ON_CHIP) or ran per step."""
    launched = []
    monkeypatch.setattr(persistent, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(persistent, "device_properties", lambda device: H200)
    monkeypatch.setattr(persistent.Persistent, "_launch",
                        lambda self, loop, t, programs: launched.append(("persistent", programs, t,
                                                                         loop.flags["W_ON_CHIP"])))
    monkeypatch.setattr(persistent, "run_per_step", lambda loop, t, programs=0: launched.append(("per step", t)))
    monkeypatch.setattr(persistent.STRATEGY, "w_hh_placement", {})
    return launched


def test_on_a_gpu_one_program_per_tile_up_to_the_multiprocessors(stand_in_gpu, monkeypatch):
    monkeypatch.setattr(persistent, "resident_programs", lambda loop, t: 132)
    persistent.STRATEGY.run(gpu_loop(64, 512, torch.bfloat16))
    persistent.STRATEGY.run(gpu_loop(4096, 4096, torch.bfloat16))  # more tiles than SMs: 132 programs loop over them
    (kind, programs, t, on_chip), (_, many, _, _) = stand_in_gpu
    assert (kind, programs, t.count(64, 512), on_chip) == ("persistent", 128, 128, 0)
    assert many == 132


def test_on_a_gpu_a_kernel_that_cannot_be_co_resident_runs_per_step(stand_in_gpu, monkeypatch):
    monkeypatch.setattr(persistent, "resident_programs", lambda loop, t: 127)  # one short of 128
    with pytest.warns(UserWarning, match="one launch per step"):
        persistent.STRATEGY.run(gpu_loop(64, 512, torch.bfloat16))
    assert [entry[0] for entry in stand_in_gpu] == ["per step"]


@pytest.mark.parametrize("B, H, dtype, resident, properties, placed", [
    (64, 512, torch.bfloat16, 132, H200, "on chip"),  # 64 KB slice + 16 KB of h
    (16, 1024, torch.bfloat16, 132, H200, "on chip"),  # 128 + 32 KB
    (16, 1024, torch.float32, 132, H200, "exceed 227 KB of shared memory"),  # 256 + 64 KB
    (64, 512, torch.bfloat16, 132, {**H200, "max_shared_mem": 64 * 1024}, "exceed 64 KB"),
    (64, 512, torch.bfloat16, 100, H200, "does not fit 128 programs"),  # the compiled kernel's occupancy
    (512, 1024, torch.bfloat16, 132, H200, "256 tiles for 132 programs"),  # past the largest tiles: programs loop
], ids=["bf16-512", "bf16-1024", "fp32-1024", "small-shared", "occupancy", "tiles"])
def test_on_a_gpu_w_on_chip_only_where_it_fits(stand_in_gpu, monkeypatch, B, H, dtype, resident, properties, placed):
    monkeypatch.setattr(persistent, "W_ON_CHIP", True)
    monkeypatch.setattr(persistent, "device_properties", lambda device: properties)
    monkeypatch.setattr(persistent, "resident_programs", lambda loop, t: resident if loop.flags["W_ON_CHIP"] else 132)
    persistent.STRATEGY.run(gpu_loop(B, H, dtype))
    where = persistent.STRATEGY.w_hh_placement["forward_kernel"]
    assert (where == "on chip") if placed == "on chip" else (placed in where), where
    assert stand_in_gpu[-1][3] == (triton.next_power_of_2(H) if placed == "on chip" else 0)


class CompiledStandIn:
    """What _occupancy reads of a compiled kernel."""

    def __init__(self, regs, spills, shared, fits=True):
        self.n_regs, self.n_spills, self.metadata = regs, spills, type("Meta", (), {"shared": shared})()
        self.fits = fits

    def _init_handles(self):
        if not self.fits:
            raise triton.runtime.errors.OutOfResources(300000, 232448, "shared memory")


def test_occupancy_from_registers_shared_memory_and_threads(monkeypatch):
    monkeypatch.setattr(persistent, "device_properties", lambda device: H200)
    cuda = torch.device("cuda")
    # registers: 65536 // (128 * 32 * 4) = 4 per SM; shared: 232448 // 40960 = 5; threads: 2048 // 128 = 16.
    assert persistent._occupancy(CompiledStandIn(128, 0, 40960), 4, cuda) == 4 * 132
    # shared memory decides: 232448 // 98304 = 2 per SM.
    assert persistent._occupancy(CompiledStandIn(64, 0, 98304), 4, cuda) == 2 * 132
    with pytest.warns(UserWarning, match="spills 8 registers"):
        assert persistent._occupancy(CompiledStandIn(255, 8, 0), 8, cuda) == 1 * 132  # 65536 // (255 * 256)
    assert persistent._occupancy(CompiledStandIn(64, 0, 300000, fits=False), 4, cuda) == 0


def layer_outputs(mode, dtype, B, H, T, seed=0):
    """Output, final states and every gradient of a persistent layer (fixed weights and inputs)."""
    torch.manual_seed(seed)
    layer = getattr(fusedrnn, mode)(H, H, backend="triton-persistent", device=GPU_DEVICE, dtype=dtype)
    x = torch.randn(T, B, H, device=GPU_DEVICE, dtype=dtype, requires_grad=True)
    out, states = layer(x)
    flat = [out, *(states if isinstance(states, tuple) else (states,))]
    grads = torch.autograd.grad(flat, [x, *layer.parameters()], [torch.ones_like(t) for t in flat])
    return [t.detach() for t in flat] + list(grads), layer


@pytest.fixture
def spin_limit(monkeypatch):
    """A bounded barrier wait, so that a broken barrier fails the test instead of hanging the run."""
    monkeypatch.setattr(persistent, "SPIN_LIMIT", 1 << 22)


@pytest.mark.gpu
@gpu_or_dry
@pytest.mark.parametrize("mode, dtype, k_stages", [
    *[(mode, dtype, 1) for mode in GATED_MODES for dtype in (torch.float32, torch.bfloat16)],
    *[(mode, torch.bfloat16, 2) for mode in GATED_MODES],  # the K loop pipelined (FUSEDRNN_K_STAGES=2)
], ids=str)
@pytest.mark.usefixtures("spin_limit")
def test_reruns_are_bitwise_identical(monkeypatch, mode, dtype, k_stages):
    monkeypatch.setattr(tiles, "PERSISTENT_K_STAGES", k_stages)
    B, H, T, reruns = (3, 37, 5, 2) if DRY else (64, 512, 256, 10)
    first, _ = layer_outputs(mode, dtype, B, H, T)
    for _ in range(reruns):
        again, _ = layer_outputs(mode, dtype, B, H, T)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.gpu
@gpu_or_dry
@pytest.mark.parametrize("tile, k_stages", [((16, 16), 1), ((16, 32), 1), ((64, 32), 1), ((16, 16), 2)],
                         ids=lambda t: "x".join(map(str, t)) if isinstance(t, tuple) else f"stages{t}")
@pytest.mark.parametrize("mode", GATED_MODES)
def test_program_counts_agree_with_float64(monkeypatch, spin_limit, mode, tile, k_stages):
    """128, 64 and 16 programs at B=64, H=512 (T=1024), and 128 with the K loop pipelined two deep: the same
    numbers as float64, within bf16 tolerance of cuDNN's own error."""
    default = tiles.choose

    def choose(strategy, B, H, dtype, programs=0, whole_rows=False):
        if strategy == "triton-persistent" and not whole_rows:
            return tiles.Tiles(*tile, 64, 4, k_stages)
        return default(strategy, B, H, dtype, programs, whole_rows)

    monkeypatch.setattr(tiles, "choose", choose)
    torch.manual_seed(1)
    B, H, T = (20, 40, 5) if DRY else (64, 512, 1024)  # in the dry run, tiles cut at both edges
    layer = getattr(fusedrnn, mode)(H, H, backend="triton-persistent", device=GPU_DEVICE, dtype=torch.bfloat16)
    reference = getattr(nn, mode)(H, H, device=GPU_DEVICE, dtype=torch.float64)
    cudnn = getattr(nn, mode)(H, H, device=GPU_DEVICE, dtype=torch.bfloat16)
    reference.load_state_dict(layer.state_dict())
    cudnn.load_state_dict(layer.state_dict())
    x = torch.randn(T, B, H, device=GPU_DEVICE, dtype=torch.float64)
    expected = reference(x)[0]
    ours = (layer(x.bfloat16())[0].double() - expected).abs().max()
    theirs = (cudnn(x.bfloat16())[0].double() - expected).abs().max()
    assert ours <= max(4 * theirs, 2e-2), f"persistent {ours:.3g}, cuDNN {theirs:.3g}"


@pytest.mark.gpu
@gpu_only
def test_runs_per_step_when_the_kernel_does_not_fit(monkeypatch):
    expected, _ = layer_outputs("LSTM", torch.float32, 16, 256, 64)
    monkeypatch.setattr(persistent, "resident_programs", lambda loop, tiles: 0)
    with pytest.warns(UserWarning, match="one launch per step"):
        got, _ = layer_outputs("LSTM", torch.float32, 16, 256, 64)
    for a, b in zip(got, expected):
        assert_close(a, b, torch.float32)


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("backend", ["triton-persistent", "triton-fusedstep"])
def test_forward_and_backward_replay_in_a_cuda_graph(monkeypatch, backend):
    """No host synchronisation in forward+backward for unpacked input: the whole step captures in a CUDA
    graph, and its replays give the eager results for new inputs."""
    monkeypatch.setattr(persistent, "SPIN_LIMIT", 0)  # the bounded wait's check reads the flag on the host
    torch.manual_seed(0)
    B, H, T = 16, 256, 64
    lstm = fusedrnn.LSTM(H, H, backend=backend, device="cuda")
    static_x = torch.randn(T, B, H, device="cuda", requires_grad=True)

    def step():
        out, (h, c) = lstm(static_x)
        loss = out.square().mean() + h.sum() + c.sum()
        return torch.autograd.grad(loss, [static_x, *lstm.parameters()])

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            step()  # warm up: compile outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_grads = step()
    for seed in (1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            static_x.copy_(torch.randn_like(static_x))
        graph.replay()
        eager = step()
        for a, b in zip(static_grads, eager):
            assert torch.equal(a, b)


@pytest.mark.gpu
@gpu_only
def test_a_grid_that_cannot_be_co_resident_is_refused_not_hung():
    # Far more programs than can be resident: the cooperative launch must fail. The bounded wait is
    # there in case it did not: the test would then fail on the flag instead of hanging. Last in the
    # file, in case a failed launch leaves the context unusable.
    programs = torch.cuda.get_device_properties(0).multi_processor_count * 64
    with pytest.raises(RuntimeError):
        run_barrier(programs, programs, 1, 1 << 20, "cuda")
        torch.cuda.synchronize()


def test_a_k_loop_depth_other_than_1_2_3_is_refused():
    """FUSEDRNN_K_STAGES is read once, at import: a bad value stops the import with a clear error."""
    import subprocess
    import sys

    env = {**os.environ, "FUSEDRNN_K_STAGES": "5"}
    run = subprocess.run([sys.executable, "-c", "import fusedrnn.strategies.tiles"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0 and "FUSEDRNN_K_STAGES=5" in run.stderr
