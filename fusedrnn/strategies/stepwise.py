"""The stepwise strategy (`backend="triton"`): per step one cuBLAS GEMM for h @ W_hh^T and one launch of
the fused pointwise step, which reads the GEMM's result. Works at every size and dtype."""

from fusedrnn.strategies.launch import PerStepStrategy

STRATEGY = PerStepStrategy("triton", gemm_in_kernel=False)
