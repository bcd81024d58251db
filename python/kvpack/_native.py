"""ctypes declarations of libkvpack.so (client/kvpack_c.h) and how the library is found.

The library is looked up, in order: $KVPACK_LIBRARY (a path), libkvpack.so next to this file
(copied there before `pip install`), then the system's library path (LD_LIBRARY_PATH,
ldconfig). Loaded once, on first use.
"""
import ctypes
import os
import threading

ABI_VERSION = 1

c_size_p = ctypes.POINTER(ctypes.c_size_t)
c_char_pp = ctypes.POINTER(ctypes.c_char_p)


class Layout(ctypes.Structure):
    _fields_ = [
        ("layers", ctypes.c_uint32),
        ("kv_heads", ctypes.c_uint32),
        ("head_dim", ctypes.c_uint32),
        ("tokens", ctypes.c_uint32),
        ("dtype", ctypes.c_int32),
    ]


class Options(ctypes.Structure):
    _fields_ = [
        ("targets", ctypes.c_char_p),
        ("dns", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_int64),
        ("max_retries", ctypes.c_int32),
        ("connections", ctypes.c_int32),
        ("resolve_interval_ms", ctypes.c_int64),
        ("down_interval_ms", ctypes.c_int64),
        ("token", ctypes.c_char_p),
        ("tls", ctypes.c_int32),
        ("tls_ca_file", ctypes.c_char_p),
        ("tls_cert_file", ctypes.c_char_p),
        ("tls_key_file", ctypes.c_char_p),
        ("tls_server_name", ctypes.c_char_p),
    ]


class Block(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_char_p),
        ("key_len", ctypes.c_size_t),
        ("layout", Layout),
        ("data", ctypes.c_void_p),
        ("data_len", ctypes.c_size_t),
    ]


class PutResult(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_int),
        ("tier", ctypes.c_int32),
        ("raw_bytes", ctypes.c_uint64),
        ("encoded_bytes", ctypes.c_uint64),
        ("message", ctypes.c_char * 256),
    ]


_SIGNATURES = {
    "kvpack_last_error": (ctypes.c_char_p, []),
    "kvpack_abi_version": (ctypes.c_int, []),
    "kvpack_options_init": (None, [ctypes.POINTER(Options)]),
    "kvpack_connect": (ctypes.c_int, [ctypes.POINTER(Options), ctypes.POINTER(ctypes.c_void_p)]),
    "kvpack_close": (None, [ctypes.c_void_p]),
    "kvpack_put": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(Block),
                                  ctypes.c_size_t, ctypes.c_char_p, ctypes.c_int,
                                  ctypes.POINTER(PutResult)]),
    "kvpack_get": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, c_char_pp, c_size_p,
                                  ctypes.c_size_t, ctypes.c_int,
                                  ctypes.POINTER(ctypes.c_void_p)]),
    "kvpack_lookup": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, c_char_pp, c_size_p,
                                     ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32),
                                     ctypes.POINTER(ctypes.c_int32)]),
    "kvpack_delete": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, c_char_pp, c_size_p,
                                     ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32)]),
    "kvpack_stats": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]),
    "kvpack_string_free": (None, [ctypes.c_void_p]),
    "kvpack_key_chain": (ctypes.c_size_t, [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
                                           ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p,
                                           ctypes.c_size_t]),
    "kvpack_blocks_count": (ctypes.c_size_t, [ctypes.c_void_p]),
    "kvpack_blocks_found": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]),
    "kvpack_blocks_data": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, c_size_p]),
    "kvpack_blocks_info": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t,
                                          ctypes.POINTER(Layout), ctypes.POINTER(ctypes.c_int32),
                                          ctypes.POINTER(ctypes.c_int32), c_char_pp]),
    "kvpack_blocks_error": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, c_char_pp]),
    "kvpack_blocks_decode": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                            ctypes.c_size_t]),
    "kvpack_blocks_decode_on_gpu": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t,
                                                   ctypes.c_int, ctypes.c_void_p]),
    "kvpack_blocks_free": (None, [ctypes.c_void_p]),
    "kvpack_load_calibration": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64)]),
}

_lock = threading.Lock()
_lib = None


def _candidates():
    env = os.environ.get("KVPACK_LIBRARY")
    if env:
        return [env]
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libkvpack.so")
    return [here, "libkvpack.so"]


def lib():
    """The loaded library, with every function's signature declared."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for path in _candidates():
            if os.sep in path and not os.path.exists(path):
                errors.append(f"{path}: no such file")
                continue
            try:
                loaded = ctypes.CDLL(path)
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise ImportError("kvpack: cannot load libkvpack.so (set KVPACK_LIBRARY to its "
                              "path): " + "; ".join(errors))
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(loaded, name)
            fn.restype = restype
            fn.argtypes = argtypes
        version = loaded.kvpack_abi_version()
        if version != ABI_VERSION:
            raise ImportError(f"kvpack: libkvpack.so has C ABI version {version}, this package "
                              f"needs {ABI_VERSION}")
        _lib = loaded
        return _lib
