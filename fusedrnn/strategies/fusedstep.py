"""The fusedstep strategy (`backend="triton-fusedstep"`): per step one launch whose programs also compute
their tile of h @ W_hh^T (forward) or dG @ W_hh (backward), so hg never goes through memory. Every
program reads the whole previous state, each re-reading its slice of W_hh from L2."""

from fusedrnn.strategies import tiles
from fusedrnn.strategies.launch import TimeLoop, run_per_step


class FusedStep:
    name = "triton-fusedstep"
    gemm_in_kernel = True

    def run(self, loop: TimeLoop) -> None:
        run_per_step(loop, tiles.choose(self.name, loop.batch, loop.hidden, loop.dtype))


STRATEGY = FusedStep()
