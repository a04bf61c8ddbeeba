"""The fusedstep strategy (`backend="triton-fusedstep"`): per step one launch whose programs also compute
their tile of h @ W_hh^T (forward) or dG @ W_hh (backward), so hg never goes through memory. Every
program reads the whole previous state, each re-reading its slice of W_hh from L2."""

from fusedrnn.strategies.launch import PerStepStrategy

STRATEGY = PerStepStrategy("triton-fusedstep", gemm_in_kernel=True)
