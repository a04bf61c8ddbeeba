"""Compile the time-loop kernels for a GPU architecture on a machine without one, and report resources.

    python benchmarks/compile_check.py [--arch 90] [--shapes 16x1024,64x512] [--strategy triton-persistent]

`--strategy single-step` compiles the cells' one-launch step kernels (fusedrnn/strategies/single_step.py).

Triton compiles to PTX and its bundled ptxas assembles it without a GPU, so compile errors, register
counts, spills and shared memory are known before a GPU minute is spent. Per cell, dtype, direction
(forward/backward) and shape it prints the tiles the strategy would choose and ptxas's report; it exits
non-zero if a kernel fails to compile, or if a persistent kernel's time loop is software-pipelined (a load
could then pass the grid barrier; `--k-stages 2` pipelines the loops inside a step). GPU resources only: nothing runs.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fusedrnn.cells import MODES, cell  # noqa: E402
from fusedrnn.strategies import driver, kernels, single_step, tiles  # noqa: E402
from fusedrnn.strategies.persistent import LAUNCH_OPTIONS  # noqa: E402

DTYPES = {"float32": (torch.float32, "fp32"), "bfloat16": (torch.bfloat16, "bf16"), "float16": (torch.float16, "fp16")}


def gpu_precision(dtype: torch.dtype) -> str:
    """The products' precision on a GPU with torch's TF32 flag on (FUSEDRNN_TF32X3 decides tf32 or tf32x3)."""
    return driver.gemm_flags(dtype, allow_tf32=True)["DOT_PRECISION"]


def time_loop_pipelined(ttgir: str) -> bool:
    """Whether the compiled time-loop kernel could issue a load before the grid barrier that orders it: its time
    loop (the outermost scf.for) software-pipelined, so that it carries asynchronous copies from one step into
    the next, or such copies issued before it. Pipelined loops inside a step (the K loop, or the tile loop with
    W_hh on chip) issue theirs after the step's barrier and wait for them before the next one: safe."""
    lines = ttgir.splitlines()
    first = next((n for n, line in enumerate(lines) if "scf.for" in line), None)
    if first is None:
        return False
    before = any("async_copy_global_to_local" in line for line in lines[:first])
    return before or "async.token" in lines[first]


@triton.jit
def _toy_time_loop(x_ptr, w_ptr, y_ptr, sync_ptr, T, BARRIER: tl.constexpr):
    """A loop of dot-fed loads, with or without the grid barrier inside: what --check-pipelining compiles."""
    r = tl.arange(0, 16)
    acc = tl.zeros((16, 16), tl.float32)
    for k in range(0, T):
        a = tl.load(x_ptr + k * 256 + r[:, None] * 16 + r[None, :], cache_modifier=".cg")
        acc = tl.dot(a, tl.load(w_ptr + k * 256 + r[:, None] * 16 + r[None, :]), acc)
        if BARRIER:
            kernels.grid_barrier(sync_ptr, k + 1, 0)
    tl.store(y_ptr + r[:, None] * 16 + r[None, :], acc)


def check_pipelining(arch: int) -> int:
    """Triton pipelines the toy loop without the barrier (its loads then run a step ahead) and not with it, and
    time_loop_pipelined tells the two apart; 0 if so."""
    seen = {}
    for barrier in (False, True):
        values = dict(x_ptr="bf16", w_ptr="bf16", y_ptr="fp32", sync_ptr="i32", T=8)
        compiled = compile_one(_toy_time_loop, values, dict(BARRIER=barrier), dict(num_warps=4, num_stages=3), arch)
        seen[barrier] = "pipelined" if time_loop_pipelined(compiled.asm["ttgir"]) else "not pipelined"
    print(f"a toy time loop at num_stages=3, without the barrier: {seen[False]}; with it: {seen[True]}")
    return 0 if seen == {False: "pipelined", True: "not pipelined"} else 1


def signature(kernel, values: dict, constexprs: dict) -> tuple[dict, dict]:
    """Triton's signature and the 16-divisibility attributes, as its JIT would derive them from values."""
    sig, attrs = {}, {}
    for index, name in enumerate(kernel.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
            continue
        value = values[name]
        if isinstance(value, str):  # a pointer, given as its element type
            sig[name] = "*" + value
            attrs[(index,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "i32"
            if value % 16 == 0 and name not in kernel.do_not_specialize:
                attrs[(index,)] = [["tt.divisibility", 16]]
    return sig, attrs


def compile_one(kernel, values: dict, constexprs: dict, options: dict, arch: int):
    sig, attrs = signature(kernel, values, constexprs)
    source = ASTSource(kernel, sig, constexprs={k: v for k, v in constexprs.items()}, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def ptxas_report(compiled, arch: int) -> str:
    """registers, spill stores/loads and stack frame, from ptxas -v on the kernel's PTX."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    suffix = "a" if arch >= 90 else ""
    with tempfile.TemporaryDirectory() as folder:
        ptx = Path(folder) / "kernel.ptx"
        ptx.write_text(compiled.asm["ptx"])
        run = subprocess.run([str(ptxas), f"--gpu-name=sm_{arch}{suffix}", "-v", str(ptx), "-o", os.devnull],
                             capture_output=True, text=True)
    text = run.stderr + run.stdout
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    frame = re.search(r"(\d+) bytes stack frame", text)
    return (f"{regs.group(1) if regs else '?'} regs, spills {spill.group(1) if spill else '?'}/"
            f"{spill.group(2) if spill else '?'} B, stack {frame.group(1) if frame else '?'} B")


def kernel_cases(mode: str, dtype_name: str, B: int, H: int, strategy: str, programs: int, flow: int = 0,
                 recurrent_mask: bool = False, zoneout: bool = False, w_on_chip: bool = False,
                 layer_norm: bool = False):
    """(direction, kernel, values, constexprs, Tiles) for one cell, dtype and shape, as driver.py builds them;
    flow > 0: the backward records the gradient flow and clips with CLIP=flow (fusedrnn/gradient_flow.py);
    recurrent_mask: the kernels with recurrent dropout's mask; zoneout: with zoneout's training masks;
    w_on_chip: with W_hh on chip (persistent.py, FUSEDRNN_W_ON_CHIP; whether the tiles fit one per program is
    the launcher's question, not checked here); layer_norm: with layer norm (whole-row tiles)."""
    the_cell = cell(mode)
    dtype, code = DTYPES[dtype_name]
    t = tiles.choose(strategy, B, H, dtype, programs=programs, whole_rows=layer_norm)
    sync = strategy == "triton-persistent"
    common = dict(COMPUTE=tl.float32, DOT_PRECISION=gpu_precision(dtype), UPCAST=False, SYNC=sync, SPIN_LIMIT=0,
                  BLOCK_B=t.block_b, BLOCK_H=t.block_h, BLOCK_K=t.block_k,
                  W_ON_CHIP=triton.next_power_of_2(H) if w_on_chip else 0)
    sizes = dict(T=512, B=B, H=H, k_begin=0, k_end=512)
    gemm = strategy != "triton"
    forward = dict(gx_ptr=code, hg_ptr=code, w_hh_ptr=code, b_hh_ptr=code, h_ptr=code, h_flip=B * H, c_ptr="fp32",
                   y_ptr=code, acts_ptr=code, lengths_ptr="i32", rmask_ptr="fp32", zoneout_ptr="u8", ln_ptr="fp32",
                   sync_ptr="i32", **sizes)
    yield "forward", kernels.forward_kernel, forward, dict(
        CELL_STEP=the_cell.forward_step, CELL_VARIANT=the_cell.variant, HAS_LENGTHS=False, REVERSE=False,
        STORE_ACTS=True, GEMM_IN_KERNEL=gemm, HAS_BIAS=not layer_norm, RECURRENT_MASK=recurrent_mask,
        ZONEOUT=int(zoneout), LAYER_NORM=int(layer_norm), GATES=the_cell.gates, **common), t
    backward = dict(acts_ptr=code, y_ptr=code, h0_ptr=code, c0_ptr=code, dy_ptr=code, dh_rec_ptr=code, w_hh_ptr=code,
                    dh_ptr="fp32", dc_ptr="fp32", dgx_ptr=code, dhg_ptr=code, dstep_ptr=code, dstep_flip=0,
                    lengths_ptr="i32", rmask_ptr="fp32", zoneout_ptr="u8", flow_ptr="fp32", clip_ptr="fp32",
                    ln_ptr="fp32", ln_grad_ptr="fp32", sync_ptr="i32", **sizes)
    yield "backward", kernels.backward_kernel, backward, dict(
        CELL_STEP=the_cell.backward_step, CELL_VARIANT=the_cell.variant, GATES=the_cell.gates, HAS_INIT=True,
        HAS_LENGTHS=False, REVERSE=False, WRITE_STEP=False, GEMM_IN_KERNEL=gemm, RECURRENT_MASK=recurrent_mask,
        ZONEOUT=int(zoneout), RECORD_FLOW=flow > 0, CLIP=flow, LAYER_NORM=int(layer_norm), **common), t


def single_step_cases(mode: str, dtype_name: str, B: int, H: int):
    """(direction, kernel, values, constexprs, Tiles) of the cells' one-launch step, as single_step.py launches
    them (hx and biases given, activations saved)."""
    the_cell = cell(mode)
    dtype, code = DTYPES[dtype_name]
    t = tiles.choose(tiles.SINGLE_STEP, B, H, dtype)
    flags = dict(VARIANT=the_cell.variant, GATES=the_cell.gates, SAVED_BLOCKS=the_cell.saved_blocks,
                 HAS_CELL_STATE=the_cell.has_cell_state, HAS_STATE=True, COMPUTE=tl.float32, BLOCK_B=t.block_b,
                 BLOCK_H=t.block_h)
    names = ("x_ptr", "h_ptr", "c_ptr", "w_ih_ptr", "w_hh_ptr", "b_ih_ptr", "b_hh_ptr", "h_out_ptr", "c_out_ptr",
             "acts_ptr")
    yield "forward", single_step.forward_kernel, dict(dict.fromkeys(names, code), B=B, I=H, H=H), dict(
        POINTWISE=the_cell.pointwise_forward, HAS_BIAS=True, STORE_ACTS=True, BLOCK_K=t.block_k,
        DOT_PRECISION=gpu_precision(dtype), UPCAST=False, **flags), t
    names = ("dh_ptr", "dc_ptr", "acts_ptr", "h_ptr", "c_ptr", "h_out_ptr", "dgx_ptr", "dgh_ptr", "dh_prev_ptr",
             "dc_prev_ptr")
    yield "backward", single_step.backward_kernel, dict(dict.fromkeys(names, code), B=B, H=H), dict(
        POINTWISE_BACKWARD=the_cell.pointwise_backward, HAS_DH=True, HAS_DC=True,
        SEPARATE_RECURRENT_GRAD=not the_cell.recurrent_grad_is_input_grad, **flags), t


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability as an integer (90: H100/H200)")
    parser.add_argument("--programs", type=int, default=132, help="multiprocessors of the target GPU")
    parser.add_argument("--shapes", default="16x256,64x512,16x1024,256x1024,16x768", help="BxH list")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--cells", default=",".join(MODES))
    parser.add_argument("--strategy", default="triton-persistent")
    parser.add_argument("--recurrent-mask", action="store_true", help="the kernels with recurrent dropout's mask")
    parser.add_argument("--zoneout", action="store_true", help="the kernels with zoneout's training masks")
    parser.add_argument("--w-on-chip", action="store_true", help="the kernels keeping W_hh on chip (persistent)")
    parser.add_argument("--layer-norm", action="store_true", help="the kernels with layer norm (whole-row tiles)")
    parser.add_argument("--k-stages", type=int, default=tiles.PERSISTENT_K_STAGES, choices=(1, 2, 3),
                        help="the persistent K loop's pipeline depth (FUSEDRNN_K_STAGES)")
    parser.add_argument("--gradient-flow", type=int, default=0, choices=(0, 1, 2),
                        help="compile the backward recording the gradient flow and clipping (1 value, 2 norm)")
    parser.add_argument("--check-pipelining", action="store_true",
                        help="only check that a loop holding the grid barrier is never software-pipelined")
    args = parser.parse_args(argv)
    if args.check_pipelining:
        return check_pipelining(args.arch)
    tiles.PERSISTENT_K_STAGES = args.k_stages  # what tiles.choose gives the persistent strategy
    failures = 0
    for mode in args.cells.split(","):
        for dtype_name in args.dtypes.split(","):
            for shape in args.shapes.split(","):
                B, H = (int(v) for v in shape.split("x"))
                cases = (single_step_cases(mode, dtype_name, B, H) if args.strategy == tiles.SINGLE_STEP
                         else kernel_cases(mode, dtype_name, B, H, args.strategy, args.programs, args.gradient_flow,
                                           args.recurrent_mask, args.zoneout, args.w_on_chip, args.layer_norm))
                for direction, kernel, values, constexprs, t in cases:
                    label = (f"{mode:4} {dtype_name:8} B={B:<4} H={H:<5} {direction:8} tiles {t.block_b}x{t.block_h} "
                             f"k{t.block_k} w{t.num_warps}, {min(t.count(B, H), args.programs)} programs")
                    options = {k: v for k, v in t.meta().items() if k in ("num_warps", "num_stages")}
                    if args.strategy == "triton-persistent":
                        options.update(LAUNCH_OPTIONS)
                    try:
                        compiled = compile_one(kernel, values, constexprs, options, args.arch)
                        pipelined = compiled.asm["ttgir"].count("async_copy_global_to_local")
                        print(f"{label}: {ptxas_report(compiled, args.arch)}, shared {compiled.metadata.shared} B"
                              + (f", {pipelined} pipelined loads" if pipelined else ""), flush=True)
                        if args.strategy == "triton-persistent" and time_loop_pipelined(compiled.asm["ttgir"]):
                            failures += 1
                            print(f"{label}: FAILED: the time loop is pipelined (a load could pass the grid "
                                  "barrier)", flush=True)
                    except Exception as error:  # report every failure, then fail
                        failures += 1
                        print(f"{label}: FAILED {type(error).__name__}: {str(error).strip()[:400]}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
