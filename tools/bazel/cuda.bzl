"""cuda_library: CUDA sources compiled by nvcc into a static library that C++ targets link.

There are no offline CUDA rules for Bazel 4, so a genrule runs nvcc (from the toolkit at
/usr/local/cuda, the same one the @cuda repository wraps) on each .cu file and archives the
objects; a cc_library with linkstatic wraps the archive and carries the host-side headers.

Flags are fixed for kvpack's kernels: -O3, C++17, -fPIC, sm_90a machine code, and
-fmad=false so that no multiply-add is contracted (the decisions the kernels make must match
the CPU codecs bit for bit). Fast math is never used.

With `--define=kvpack_cuda=off` nothing is compiled and the target is marked incompatible,
so builds without a CUDA toolkit skip it (see //tools/bazel:cuda_off).
"""

NVCC = "/usr/local/cuda/bin/nvcc"

NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-Xcompiler",
    "-fPIC",
    "-gencode",
    "arch=compute_90a,code=sm_90a",
    "-fmad=false",
    "-Xptxas",
    "-v",
    "-I.",
]

def cuda_compatible():
    """target_compatible_with value for targets that need the CUDA toolkit."""
    return select({
        "//tools/bazel:cuda_off": ["//tools/bazel:cuda_toolkit_missing"],
        "//conditions:default": [],
    })

def if_cuda(if_true, if_false = []):
    """Selects `if_true` when CUDA is on (the default), `if_false` under kvpack_cuda=off."""
    return select({
        "//tools/bazel:cuda_off": if_false,
        "//conditions:default": if_true,
    })

def cuda_library(name, srcs, hdrs = [], cuda_hdrs = [], deps = [], copts = [], **kwargs):
    """A static library of CUDA kernels with host-callable headers.

    Args:
      name: the cc_library other targets depend on.
      srcs: .cu files, each compiled by nvcc separately.
      hdrs: headers C++ callers include (host code only; no device syntax).
      cuda_hdrs: headers only the .cu files include (.cuh).
      deps: cc_library targets whose headers the .cu files include; their headers are made
        available to nvcc, and they are linked into dependents.
      copts: extra nvcc flags.
      **kwargs: passed to the cc_library (visibility, tags, ...).
    """
    archive = "lib" + name + "_kernels.a"
    log = name + "_ptxas.txt"
    compile_cmds = []
    for i, src in enumerate(srcs):
        compile_cmds.append(
            "{nvcc} {flags} {copts} -c $(location {src}) -o $$tmp/{i}.o 2>>$$tmp/log".format(
                nvcc = NVCC,
                flags = " ".join(NVCC_FLAGS),
                copts = " ".join(copts),
                src = src,
                i = i,
            ),
        )
    nvcc_cmd = " && ".join([
        "tmp=$$(mktemp -d)",
        "trap 'rm -rf $$tmp' EXIT",
        "touch $$tmp/log",
        "({}) || (cat $$tmp/log >&2; exit 1)".format(" && ".join(compile_cmds)),
        "ar rcs $(location {}) $$tmp/*.o".format(archive),
        "cp $$tmp/log $(location {})".format(log),
    ])
    off_cmd = "ar rcs $(location {a}) && echo 'built without CUDA' > $(location {l})".format(
        a = archive,
        l = log,
    )
    native.genrule(
        name = name + "_nvcc",
        srcs = srcs + hdrs + cuda_hdrs + deps,
        outs = [archive, log],
        cmd = select({
            "//tools/bazel:cuda_off": off_cmd,
            "//conditions:default": nvcc_cmd,
        }),
        message = "nvcc " + name,
        target_compatible_with = cuda_compatible(),
        tags = ["no-remote"],
    )
    native.cc_library(
        name = name,
        srcs = [archive],
        hdrs = hdrs,
        deps = deps + ["@cuda//:cudart_static"],
        linkstatic = True,
        alwayslink = True,
        target_compatible_with = cuda_compatible(),
        **kwargs
    )
