"""Blocks as numpy arrays or torch tensors: shape [layers][2][tokens][kv_heads][head_dim].

numpy is used when present; torch when importable. numpy has no bfloat16, so bf16 blocks are
uint16 arrays holding the bf16 bit patterns (pass dtype="bf16" when putting them); torch
bf16 tensors are taken and returned as such.
"""
import ctypes

from . import _native

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a Debian package in CI
    np = None

try:
    import torch
except ImportError:
    torch = None

DTYPE_CODES = {"fp16": 1, "bf16": 2, "fp32": 3}
DTYPE_NAMES = {v: k for k, v in DTYPE_CODES.items()}
DTYPE_SIZES = {"fp16": 2, "bf16": 2, "fp32": 4}


def is_torch(x):
    return torch is not None and isinstance(x, torch.Tensor)


def dtype_name(x, override=None):
    """'fp16', 'bf16' or 'fp32' for a block; ValueError for anything else."""
    if override is not None:
        if override not in DTYPE_CODES:
            raise ValueError(f"kvpack: unknown dtype {override!r} (fp16, bf16, fp32)")
        return override
    if is_torch(x):
        names = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
        if x.dtype in names:
            return names[x.dtype]
        raise ValueError(f"kvpack: torch dtype {x.dtype} is not fp16, bf16 or fp32")
    if np is not None and isinstance(x, np.ndarray):
        names = {np.dtype(np.float16): "fp16", np.dtype(np.float32): "fp32"}
        if x.dtype in names:
            return names[x.dtype]
        if x.dtype == np.dtype(np.uint16):
            raise ValueError("kvpack: a uint16 array needs dtype='bf16' (its bit patterns)")
        raise ValueError(f"kvpack: numpy dtype {x.dtype} is not float16 or float32")
    raise TypeError(f"kvpack: a block must be a numpy array or a torch tensor, not "
                    f"{type(x).__name__}")


def host_view(x, override=None):
    """(keepalive, address, nbytes, Layout) of a block in host memory.

    A CUDA tensor is staged through host memory; non-contiguous blocks are made contiguous.
    """
    name = dtype_name(x, override)
    if x.ndim != 5 or x.shape[1] != 2:
        raise ValueError(f"kvpack: a block has shape [layers, 2, tokens, kv_heads, head_dim], "
                         f"not {tuple(x.shape)}")
    layers, _, tokens, kv_heads, head_dim = (int(d) for d in x.shape)
    layout = _native.Layout(layers, kv_heads, head_dim, tokens, DTYPE_CODES[name])
    if is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        return t, t.data_ptr(), t.numel() * t.element_size(), layout
    a = np.ascontiguousarray(x)
    return a, a.ctypes.data, a.nbytes, layout


def empty_like_layout(layout, like=None):
    """A host array (or CPU torch tensor when `like` is one) for a block of `layout`."""
    shape = (layout.layers, 2, layout.tokens, layout.kv_heads, layout.head_dim)
    name = DTYPE_NAMES[layout.dtype]
    if is_torch(like):
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]
        return torch.empty(shape, dtype=dt)
    dt = {"fp16": np.float16, "bf16": np.uint16, "fp32": np.float32}[name]
    return np.empty(shape, dtype=dt)


def address_of(x):
    """(address, nbytes) of a contiguous host array or tensor, for writing into it."""
    if is_torch(x):
        if not x.is_contiguous():
            raise ValueError("kvpack: the destination tensor must be contiguous")
        return x.data_ptr(), x.numel() * x.element_size()
    if not x.flags["C_CONTIGUOUS"] or not x.flags["WRITEABLE"]:
        raise ValueError("kvpack: the destination array must be contiguous and writeable")
    return x.ctypes.data, x.nbytes


def copy_into(dst, address, nbytes):
    ctypes.memmove(address_of(dst)[0], address, nbytes)
