"""The stepwise strategy (`backend="triton"`): per step one cuBLAS GEMM for h @ W_hh^T and one launch of
the fused pointwise step, which reads the GEMM's result. Works at every size and dtype."""

from fusedrnn.strategies import tiles
from fusedrnn.strategies.launch import TimeLoop, run_per_step


class Stepwise:
    name = "triton"
    gemm_in_kernel = False

    def run(self, loop: TimeLoop) -> None:
        run_per_step(loop, tiles.choose(self.name, loop.batch, loop.hidden, loop.dtype))


STRATEGY = Stepwise()
