"""CPU runs exercise the Triton kernels in Triton's interpreter; `-m gpu` runs compile them for CUDA.

TRITON_INTERPRET must be set before triton is first imported, hence here, in pytest_configure.
FUSEDRNN_POISON fills fresh kernel outputs with NaN, so that an element a kernel forgets fails a test.
"""

import os


def pytest_configure(config):
    os.environ["FUSEDRNN_POISON"] = "1"
    markexpr = config.getoption("markexpr", "") or ""
    if not ("gpu" in markexpr and "not gpu" not in markexpr):
        os.environ.setdefault("TRITON_INTERPRET", "1")
