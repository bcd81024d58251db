"""kvpack.Client against real servers (two shards): bytes round-trip, lookup, delete,
stats, key chains, errors."""
import numpy as np
import pytest

import kvpack


def blocks_of(n, layers=2, tokens=16, heads=2, dim=64, dtype=np.float16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((layers, 2, tokens, heads, dim)).astype(dtype) for _ in range(n)]


@pytest.fixture()
def client(targets):
    with kvpack.Client(targets, timeout=10) as c:
        yield c


def test_raw_round_trip_is_exact_both_ways(client, ns):
    keys = kvpack.key_chain(ns, list(range(16 * 6)), 16)
    blocks = blocks_of(len(keys))
    results = client.put(ns, keys, blocks, codec="raw")
    assert [r.error for r in results] == [None] * 6
    assert all(r.raw_bytes == blocks[0].nbytes and r.tier == "ram" for r in results)
    for decode in ("server", "local"):
        got = client.get(ns, keys, decode=decode)
        for g, b in zip(got, blocks):
            assert g.shape == b.shape and g.dtype == b.dtype
            assert np.array_equal(g, b)


def test_fp32_and_bf16_bits_round_trip(client, ns):
    f32 = blocks_of(1, dtype=np.float32, seed=1)[0]
    bf16_bits = (f32.view(np.uint32) >> 16).astype(np.uint16)
    client.put(ns, [b"a"], [f32], codec="raw")
    client.put(ns, [b"b"], [bf16_bits], codec="raw", dtype="bf16")
    a, b = client.get(ns, [b"a", b"b"])
    assert a.dtype == np.float32 and np.array_equal(a, f32)
    assert b.dtype == np.uint16 and np.array_equal(b, bf16_bits)


def test_int8_codec_stays_within_its_bound(client, ns):
    block = blocks_of(1, seed=2)[0]
    client.put(ns, ["k"], [block], codec="int8")
    for decode in ("server", "local"):
        (got,) = client.get(ns, ["k"], decode=decode)
        err = np.abs(got.astype(np.float32) - block.astype(np.float32))
        # int8 groups of 32 with an absmax scale: error <= scale / 2 (+ fp16 rounding).
        groups = np.abs(block.astype(np.float32)).reshape(-1, 32).max(axis=1)
        assert np.all(err.reshape(-1, 32) <= (groups / 127 * 0.5 + 1e-2)[:, None])
        assert not np.array_equal(got, block)  # it really was quantized


def test_lookup_delete_and_misses(client, ns):
    keys = kvpack.key_chain(ns, list(range(16 * 8)), 16)
    client.put(ns, keys, blocks_of(8, seed=3), codec="raw")
    assert client.lookup(ns, keys) == (8, ["ram"] * 8)
    assert client.delete(ns, [keys[3]]) == 1
    assert client.lookup(ns, keys)[0] == 3
    got = client.get(ns, keys)
    assert got[3] is None and got[2] is not None
    assert client.delete(ns, keys) == 7


def test_stats_lists_every_server(client, ns, targets):
    client.put(ns, ["x"], blocks_of(1), codec="raw")
    stats = client.stats()
    assert sorted(s["target"] for s in stats) == sorted(targets)
    assert all(s["code"] == 0 for s in stats)
    assert sum(s["ram"]["blocks"] for s in stats) >= 1
    assert any(ns in s["namespaces"] for s in stats)


def test_key_chain_prefix_property(ns):
    tokens = list(range(100))
    full = kvpack.key_chain(ns, tokens, 16)
    assert len(full) == 6 and all(len(k) == 16 for k in full)
    assert kvpack.key_chain(ns, tokens[:64] + [7] * 36, 16)[:4] == full[:4]
    assert kvpack.key_chain(ns, tokens[:64] + [7] * 36, 16)[4] != full[4]
    assert kvpack.key_chain("other", tokens, 16)[0] != full[0]


def test_errors_carry_grpc_codes(client, ns, targets):
    with pytest.raises(kvpack.KvpackError) as e:
        client.get("never-written-" + ns, [b"k"])
    assert e.value.code == 5 and e.value.code_name == "NOT_FOUND"
    with pytest.raises(kvpack.KvpackError) as e:
        client.get("", [b"k"])
    assert e.value.code == 3
    with pytest.raises(kvpack.KvpackError) as e:
        client.put(ns, ["k"], blocks_of(1), codec="no-such-codec")
    assert e.value.code == 3 and len(e.value.results) == 1
    with pytest.raises(ValueError):
        client.put(ns, ["k"], [np.zeros((2, 16, 2, 64), np.float16)])
    with pytest.raises(ValueError):
        client.put(ns, ["k"], [np.zeros((1, 2, 16, 2, 64), np.int32)])
    with pytest.raises(kvpack.KvpackError) as e:
        kvpack.Client(targets, dns="localhost:1")
    assert e.value.code == 3
    with pytest.raises(kvpack.KvpackError) as e:
        kvpack.Client(dns="no-such-host.invalid:50051")
    assert e.value.code == 14


def test_calibrations_say_what_is_wrong(client, ns, tmp_path):
    with pytest.raises(kvpack.KvpackError) as e:
        kvpack.load_calibration(str(tmp_path / "missing.kvcal"))
    assert e.value.code_name == "NOT_FOUND"
    bad = tmp_path / "bad.kvcal"
    bad.write_bytes(b"not a calibration")
    with pytest.raises(kvpack.KvpackError) as e:
        kvpack.load_calibration(str(bad))
    assert e.value.code_name == "DATA_LOSS" and str(bad) in e.value.message
    # The test servers run without --calibrations: a put naming one is refused, block by block.
    with pytest.raises(kvpack.KvpackError) as e:
        client.put(ns, ["k"], blocks_of(1), codec="turbo_p3,calibration=0123456789abcdef")
    assert e.value.results[0].error.code_name == "FAILED_PRECONDITION"


def test_a_server_that_is_down_costs_only_its_keys(targets, ns):
    # A third "server" that listens nowhere: its keys are misses and per-key put errors.
    dead = "127.0.0.1:1"
    with kvpack.Client(list(targets) + [dead], timeout=5, down_interval=5) as c:
        keys = [f"k{i}".encode() for i in range(60)]
        results = c.put(ns, keys, blocks_of(1) * 60, codec="raw", strict=False)
        failed = {r.key for r in results if r.error is not None}
        assert failed and len(failed) < 60
        assert all(r.error.code == 14 for r in results if r.error is not None)
        got = c.get(ns, keys)
        assert {k for k, g in zip(keys, got) if g is None} == failed
