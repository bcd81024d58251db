"""kvpack's Python client: Client, KvpackError, key_chain. See kvpack/__init__.py."""
import ctypes
import os
import json
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from . import _native
from . import _tensors

# gRPC's canonical codes (grpc.StatusCode numbering).
CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
TIER_NAMES = {0: "unspecified", 1: "ram", 2: "disk", 3: "device"}
KEY_BYTES = 16

Key = Union[bytes, str]


class KvpackError(Exception):
    """A failed kvpack call. `code` is gRPC's numeric status code, `code_name` its name
    ("UNAVAILABLE", ...), `message` the server's or the library's reason."""

    def __init__(self, code: int, message: str, results=None):
        self.code = code
        self.code_name = CODE_NAMES.get(code, str(code))
        self.message = message
        self.results = results  # for a put: every block's PutResult
        super().__init__(f"{self.code_name}: {message}")


class PutResult(NamedTuple):
    key: bytes
    raw_bytes: int
    encoded_bytes: int
    tier: str
    error: Optional[KvpackError]  # None when the block is stored


def _check(code: int):
    if code != 0:
        raise KvpackError(code, _native.lib().kvpack_last_error().decode("utf-8", "replace"))


def load_calibration(path: str) -> str:
    """Loads a calibration file (made by kvpack_eval --calibration_out) into this process, so
    that blocks coded with it (turbo_p* policies) decode here with get(..., decode="client").
    Returns its fingerprint in hex, the name policies give it ("turbo_p3,calibration=HEX").
    Raises KvpackError: NOT_FOUND for a missing file, DATA_LOSS for one that is not a
    calibration."""
    fingerprint = ctypes.c_uint64(0)
    _check(_native.lib().kvpack_load_calibration(os.fsencode(path), ctypes.byref(fingerprint)))
    return f"{fingerprint.value:016x}"


def _key_bytes(key: Key) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"kvpack: a key is bytes or str, not {type(key).__name__}")


def _ns_bytes(ns: str) -> bytes:
    if not isinstance(ns, str):
        raise TypeError("kvpack: the namespace is a str")
    return ns.encode("utf-8")


class _KeyArray:
    """keys as the (const char* const*, const size_t*) pair the C ABI takes."""

    def __init__(self, keys: Sequence[Key]):
        self.keys = [_key_bytes(k) for k in keys]
        n = len(self.keys)
        self.ptrs = (ctypes.c_char_p * n)(*self.keys)
        self.lens = (ctypes.c_size_t * n)(*(len(k) for k in self.keys))
        self.count = n


def key_chain(ns: str, tokens: Sequence[int], tokens_per_block: int = 16) -> List[bytes]:
    """The keys of the full blocks of `tokens` (client/key_chain.h): 16 bytes each, each
    depending on every earlier token, so a prompt's prefix maps to a prefix of its chain."""
    lib = _native.lib()
    n = len(tokens)
    arr = (ctypes.c_int32 * n)(*tokens)
    name = _ns_bytes(ns)
    count = lib.kvpack_key_chain(name, len(name), arr, n, tokens_per_block, None, 0)
    out = ctypes.create_string_buffer(count * KEY_BYTES)
    lib.kvpack_key_chain(name, len(name), arr, n, tokens_per_block, out, count)
    raw = out.raw
    return [raw[i * KEY_BYTES:(i + 1) * KEY_BYTES] for i in range(count)]


class _Fetched:
    """Owns a kvpack_blocks handle; frees it when dropped."""

    def __init__(self, handle):
        self.handle = handle

    def __del__(self):
        if self.handle:
            _native.lib().kvpack_blocks_free(self.handle)
            self.handle = None


class Client:
    """A client of one kvpack server or of a cluster (keys spread over the servers by
    rendezvous hashing; client/sharded_client.h).

    Client(targets="127.0.0.1:50051") or Client(targets=["a:50051", "b:50051"]) or
    Client(dns="kvpack-headless.ns.svc:50051"). Thread-safe: share one among threads (the
    C calls release the GIL). Close with close() or a `with` block.
    """

    def __init__(self, targets: Union[str, Sequence[str], None] = None, *, dns: str = None,
                 timeout: float = 30.0, max_retries: int = 2, connections: int = 1,
                 token: str = None, resolve_interval: float = 30.0,
                 down_interval: float = 1.0, tls: bool = False, tls_ca_file: str = None,
                 tls_cert_file: str = None, tls_key_file: str = None,
                 tls_server_name: str = None):
        lib = _native.lib()
        self._handle = None
        opts = _native.Options()
        lib.kvpack_options_init(ctypes.byref(opts))
        if targets is not None and not isinstance(targets, str):
            targets = ",".join(targets)
        enc = lambda s: None if s is None else s.encode("utf-8")
        opts.targets = enc(targets)
        opts.dns = enc(dns)
        opts.timeout_ms = int(timeout * 1000)
        opts.max_retries = max_retries
        opts.connections = connections
        opts.token = enc(token)
        opts.resolve_interval_ms = int(resolve_interval * 1000)
        opts.down_interval_ms = int(down_interval * 1000)
        opts.tls = 1 if (tls or tls_ca_file or tls_cert_file or tls_key_file) else 0
        opts.tls_ca_file = enc(tls_ca_file)
        opts.tls_cert_file = enc(tls_cert_file)
        opts.tls_key_file = enc(tls_key_file)
        opts.tls_server_name = enc(tls_server_name)
        handle = ctypes.c_void_p()
        _check(lib.kvpack_connect(ctypes.byref(opts), ctypes.byref(handle)))
        self._handle = handle

    def close(self):
        # getattr: __del__ runs this on an object whose __init__ failed before the handle.
        if getattr(self, "_handle", None):
            _native.lib().kvpack_close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _h(self):
        if not self._handle:
            raise KvpackError(9, "the client is closed")
        return self._handle

    def put(self, ns: str, keys: Sequence[Key], blocks: Sequence, *, codec: str = None,
            durable: bool = False, dtype: str = None, strict: bool = True) -> List[PutResult]:
        """Stores blocks[i] under keys[i]. A block is a numpy array or torch tensor shaped
        [layers, 2, tokens, kv_heads, head_dim] (fp16, bf16, fp32; dtype="bf16" for uint16
        arrays of bf16 bits). Returns one PutResult per block; with strict (the default) a
        block that was not stored raises KvpackError carrying every result in `.results`."""
        if len(keys) != len(blocks):
            raise ValueError(f"kvpack: {len(keys)} keys for {len(blocks)} blocks")
        n = len(blocks)
        c_blocks = (_native.Block * n)()
        keep = []
        key_bytes = [_key_bytes(k) for k in keys]
        for i, (key, block) in enumerate(zip(key_bytes, blocks)):
            holder, address, nbytes, layout = _tensors.host_view(block, dtype)
            keep.append(holder)
            c_blocks[i].key = key
            c_blocks[i].key_len = len(key)
            c_blocks[i].layout = layout
            c_blocks[i].data = address
            c_blocks[i].data_len = nbytes
        results = (_native.PutResult * n)()
        _check(_native.lib().kvpack_put(self._h(), _ns_bytes(ns), c_blocks, n,
                                        codec.encode() if codec else None, int(durable),
                                        results))
        out = []
        for key, r in zip(key_bytes, results):
            error = None if r.code == 0 else KvpackError(r.code, r.message.decode("utf-8",
                                                                                  "replace"))
            out.append(PutResult(key, r.raw_bytes, r.encoded_bytes, TIER_NAMES.get(r.tier, "?"),
                                 error))
        if strict:
            for r in out:
                if r.error is not None:
                    raise KvpackError(r.error.code, r.error.message, results=out)
        return out

    def _fetch(self, ns: str, keys: Sequence[Key], want: int) -> Tuple[_Fetched, int]:
        arr = _KeyArray(keys)
        handle = ctypes.c_void_p()
        _check(_native.lib().kvpack_get(self._h(), _ns_bytes(ns), arr.ptrs, arr.lens,
                                        arr.count, want, ctypes.byref(handle)))
        return _Fetched(handle), arr.count

    def get(self, ns: str, keys: Sequence[Key], *, decode: str = "server",
            like=None) -> List:
        """Fetches keys: one block per key (None for a miss), shaped as put.

        decode="server": the server decodes; "local": fetched encoded (fewer bytes on the
        wire) and decoded on this CPU. Blocks are numpy arrays (bf16 as uint16 bits), or CPU
        torch tensors when `like` is a torch tensor."""
        if decode not in ("server", "local"):
            raise ValueError("kvpack: decode is 'server' or 'local'")
        lib = _native.lib()
        fetched, n = self._fetch(ns, keys, 0 if decode == "server" else 1)
        out = []
        layout = _native.Layout()
        size = ctypes.c_size_t()
        for i in range(n):
            if not lib.kvpack_blocks_found(fetched.handle, i):
                out.append(None)
                continue
            _check(lib.kvpack_blocks_info(fetched.handle, i, ctypes.byref(layout), None, None,
                                          None))
            block = _tensors.empty_like_layout(layout, like)
            if decode == "server":
                address = lib.kvpack_blocks_data(fetched.handle, i, ctypes.byref(size))
                _tensors.copy_into(block, address, size.value)
            else:
                dst, nbytes = _tensors.address_of(block)
                _check(lib.kvpack_blocks_decode(fetched.handle, i, dst, nbytes))
            out.append(block)
        return out

    def get_into(self, ns: str, keys: Sequence[Key], dsts: Sequence, *,
                 decode: str = "local", device: int = 0) -> List[bool]:
        """Fetches keys into preallocated blocks dsts[i] (contiguous, of the stored layout's
        size): numpy arrays, CPU tensors, or CUDA tensors (decoded on that GPU from encoded
        bytes when decode="gpu"). Returns, per key, whether it was found (and written)."""
        if len(keys) != len(dsts):
            raise ValueError(f"kvpack: {len(keys)} keys for {len(dsts)} destinations")
        if decode not in ("server", "local", "gpu"):
            raise ValueError("kvpack: decode is 'server', 'local' or 'gpu'")
        lib = _native.lib()
        fetched, n = self._fetch(ns, keys, 0 if decode == "server" else 1)
        found = []
        for i in range(n):
            ok = bool(lib.kvpack_blocks_found(fetched.handle, i))
            found.append(ok)
            if not ok:
                continue
            dst = dsts[i]
            if _tensors.is_torch(dst) and dst.device.type == "cuda":
                if decode == "gpu":
                    _check(lib.kvpack_blocks_decode_on_gpu(fetched.handle, i,
                                                           dst.device.index or 0,
                                                           dst.data_ptr()))
                    continue
                host = _tensors.torch.empty(dst.shape, dtype=dst.dtype, pin_memory=True)
                address, nbytes = _tensors.address_of(host)
                _check(lib.kvpack_blocks_decode(fetched.handle, i, address, nbytes))
                dst.copy_(host, non_blocking=False)
                continue
            address, nbytes = _tensors.address_of(dst)
            _check(lib.kvpack_blocks_decode(fetched.handle, i, address, nbytes))
        return found

    def lookup(self, ns: str, keys: Sequence[Key]) -> Tuple[int, List[str]]:
        """How many leading keys of the chain are stored, and the tier ("ram", "disk") of
        each of them."""
        arr = _KeyArray(keys)
        prefix = ctypes.c_uint32()
        tiers = (ctypes.c_int32 * max(arr.count, 1))()
        _check(_native.lib().kvpack_lookup(self._h(), _ns_bytes(ns), arr.ptrs, arr.lens,
                                           arr.count, ctypes.byref(prefix), tiers))
        return prefix.value, [TIER_NAMES.get(t, "?") for t in tiers[:prefix.value]]

    def delete(self, ns: str, keys: Sequence[Key]) -> int:
        """Deletes keys; returns how many were stored."""
        arr = _KeyArray(keys)
        deleted = ctypes.c_uint32()
        _check(_native.lib().kvpack_delete(self._h(), _ns_bytes(ns), arr.ptrs, arr.lens,
                                           arr.count, ctypes.byref(deleted)))
        return deleted.value

    def stats(self) -> List[dict]:
        """Every server's counters (client/kvpack_c.h, kvpack_stats), one dict per server."""
        lib = _native.lib()
        out = ctypes.c_void_p()
        _check(lib.kvpack_stats(self._h(), ctypes.byref(out)))
        try:
            return json.loads(ctypes.string_at(out.value).decode("utf-8"))
        finally:
            lib.kvpack_string_free(out)
