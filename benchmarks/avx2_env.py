"""Print the environment that turns AVX-512 off in numba, OpenBLAS and PyTorch (MKL, oneDNN), to
measure on an AVX-512 machine what bptt and PyTorch do with AVX2 alone (the instruction set of
the other machines these benchmarks ran on; not their clock or caches):

    eval "$(python benchmarks/avx2_env.py)"
    python benchmarks/charlm.py            # or long.py, cells.py: every process they start inherits it

numba compiles for the host's features with the avx512 (and later vector) ones turned off, into a
cache directory of its own (code built for one set of features is not mixed with the other's),
and bptt then picks its AVX2 kernels (``_numba_loops._target_has_avx512``); OpenBLAS takes its
Haswell kernels (OPENBLAS_CORETYPE=Zen), PyTorch its AVX2 kernels and MKL's (ATEN_CPU_CAPABILITY,
MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA).
"""

import os
import tempfile

OFF = ("avx512", "avx10", "amx", "avxvnni", "avxifma", "avxneconvert", "vaes", "vpclmulqdq", "gfni", "evex512")


def features():
    """The host's features for numba, each avx512-era one turned off."""
    from llvmlite import binding

    host = binding.get_host_cpu_features()
    return ",".join(("+" if on and not name.startswith(OFF) else "-") + name for name, on in sorted(host.items()))


def main():
    env = {
        "NUMBA_CPU_NAME": "znver2",
        "NUMBA_CPU_FEATURES": features(),
        "NUMBA_CACHE_DIR": os.path.join(tempfile.gettempdir(), "bptt-numba-avx2"),
        "OPENBLAS_CORETYPE": "Zen",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    for k, v in env.items():
        print(f"export {k}='{v}'")


if __name__ == "__main__":
    main()
