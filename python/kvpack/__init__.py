"""kvpack: store and fetch LLM KV-cache blocks in kvpack servers, from Python.

    import kvpack
    with kvpack.Client("127.0.0.1:50051") as client:           # or a list, or dns="name:port"
        keys = kvpack.key_chain("llama3-8b", prompt_token_ids, 16)
        client.put("llama3-8b", keys, blocks, codec="int8")       # blocks: [L, 2, T, H, D]
        hit, tiers = client.lookup("llama3-8b", keys)
        got = client.get("llama3-8b", keys[:hit])                 # numpy arrays

A thin layer over libkvpack.so (client/kvpack_c.h) with ctypes; no third-party build
dependency. numpy is used when present; torch tensors (CPU or CUDA) are accepted when torch
is importable. Errors raise KvpackError, whose `code` is gRPC's status code.
kvpack.connector has a KV connector for vLLM-style engines.
"""
from .client import Client, KvpackError, PutResult, key_chain, load_calibration, CODE_NAMES

__all__ = ["Client", "KvpackError", "PutResult", "key_chain", "load_calibration", "CODE_NAMES"]
__version__ = "0.1.0"
