"""The kernels the architectures share: the CPU encoder GEMM (oneDNN), exact top-k selection, and
sparse encode/decode autograd Functions whose backward touches only the active latents. Each has
its eager PyTorch twin and a test against it (tests/models/kernels/); the numba kernels
(`_select_kernel`, `_group_kernel`) load on first use through `compiled`."""
