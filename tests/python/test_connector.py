"""KvpackConnector driven by a small engine loop that calls the connector's methods in the
order vLLM's v1 engine does, over real paged KV caches (numpy) and real servers."""
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import pytest

import kvpack
from kvpack.connector import (KVConnectorRole, KvpackConnector, KvpackConnectorConfig)

LAYERS, HEADS, DIM, BLOCK, NUM_BLOCKS = 4, 2, 64, 16, 64


# The parts of vLLM's scheduler objects the connector reads.
@dataclass
class Request:
    request_id: str
    prompt_token_ids: List[int]

    @property
    def num_tokens(self):
        return len(self.prompt_token_ids)


@dataclass
class KVCacheBlocks:
    block_ids: List[int]

    def get_block_ids(self):
        return (self.block_ids,)  # one KV-cache group


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: List[int]
    block_ids: tuple
    num_computed_tokens: int


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: List[NewRequestData]
    num_scheduled_tokens: Dict[str, int] = field(default_factory=dict)


class Engine:
    """One engine instance: a paged KV cache per layer, a block allocator, a scheduler-side
    and a worker-side connector, and a forward pass that 'computes' KV for the tokens it is
    asked to (deterministic values derived from the token ids and positions)."""

    def __init__(self, targets, ns, codec, seed):
        config = KvpackConnectorConfig(targets=targets, namespace=ns, block_size=BLOCK,
                                       codec=codec)
        self.client = kvpack.Client(targets, timeout=10)
        self.scheduler = KvpackConnector(role=KVConnectorRole.SCHEDULER, config=config,
                                         client=self.client)
        self.worker = KvpackConnector(role=KVConnectorRole.WORKER, config=config,
                                      client=self.client)
        self.kv = {f"model.layers.{i}.self_attn": np.zeros((2, NUM_BLOCKS, BLOCK, HEADS, DIM),
                                                           np.float16)
                   for i in range(LAYERS)}
        self.worker.register_kv_caches(self.kv)
        rng = np.random.default_rng(seed)
        self.free = list(rng.permutation(NUM_BLOCKS))  # a shuffled free list
        self.computed_pages = []

    @staticmethod
    def true_kv(layer, tokens):
        """The KV a model would compute for `tokens` (a full page) at `layer`."""
        t = np.array(tokens, np.float32)[:, None, None]
        h = np.arange(HEADS, dtype=np.float32)[None, :, None]
        d = np.arange(DIM, dtype=np.float32)[None, None, :]
        k = np.sin(t * 0.37 + h * 1.3 + d * 0.11 + layer)
        v = np.cos(t * 0.23 - h * 0.7 + d * 0.05 - layer) * 2
        return np.stack([k, v]).astype(np.float16)

    def step(self, request):
        """One scheduler step + forward pass that prefills `request`; returns its block table
        and how many tokens came from kvpack."""
        # Scheduler: ask the connector, allocate, tell it, build the step's metadata.
        external, load_async = self.scheduler.get_num_new_matched_tokens(request, 0)
        assert load_async is False
        pages = -(-request.num_tokens // BLOCK)
        block_ids = [int(self.free.pop()) for _ in range(pages)]
        self.scheduler.update_state_after_alloc(request, KVCacheBlocks(block_ids), external)
        out = SchedulerOutput(
            [NewRequestData(request.request_id, request.prompt_token_ids, (block_ids,), 0)],
            {request.request_id: request.num_tokens - external})
        meta = self.scheduler.build_connector_meta(out)

        # Worker: bind, start loading, then layer by layer wait, compute, save.
        self.worker.bind_connector_metadata(meta)
        self.worker.start_load_kv(forward_context=None)
        first_computed_page = external // BLOCK
        self.computed_pages = list(range(first_computed_page, pages))
        for layer, (name, kv) in enumerate(self.kv.items()):
            self.worker.wait_for_layer_load(name)
            for page in self.computed_pages:
                toks = request.prompt_token_ids[page * BLOCK:(page + 1) * BLOCK]
                kv[:, block_ids[page], :len(toks)] = self.true_kv(layer, toks)
            self.worker.save_kv_layer(name, kv, attn_metadata=None)
        self.worker.wait_for_save()
        self.worker.clear_connector_metadata()
        self.last_block_ids = block_ids
        assert self.worker.get_finished({request.request_id}) == (None, None)
        assert self.scheduler.request_finished(request, block_ids) == (False, None)
        return block_ids, external

    def page(self, block_id):
        """The [layers][2][block][heads][dim] contents of one page."""
        return np.stack([kv[:, block_id] for kv in self.kv.values()])


def prompt(n, start=0):
    return [(start + 7 * i) % 32000 for i in range(n)]


@pytest.fixture(params=["raw", "int8"])
def codec(request):
    return request.param


def test_prefill_saves_and_decode_loads_the_same_pages(targets, ns, codec):
    prefill = Engine(targets, ns, codec, seed=1)
    decode = Engine(targets, ns, codec, seed=2)
    req = Request("r1", prompt(100))  # 6 full pages + 4 tokens

    p_blocks, external = prefill.step(req)
    assert external == 0
    assert prefill.worker.pages_saved == 6 and prefill.worker.save_errors == 0

    d_blocks, external = decode.step(Request("r1-decode", req.prompt_token_ids))
    assert external == 96  # every full page; the partial one is computed
    assert decode.worker.pages_loaded == 6
    assert decode.worker.pages_saved == 0  # nothing new to save
    for page in range(6):
        want = prefill.page(p_blocks[page])
        got = decode.page(d_blocks[page])
        if codec == "raw":
            assert np.array_equal(got, want), page
        else:
            err = np.abs(got.astype(np.float32) - want.astype(np.float32))
            groups = np.abs(want.astype(np.float32)).reshape(-1, 32).max(axis=1)
            assert np.all(err.reshape(-1, 32) <= (groups / 127 * 0.5 + 2e-3)[:, None]), page
    # The last, partial page was computed by the decode engine itself.
    assert np.array_equal(decode.page(d_blocks[6]), prefill.page(p_blocks[6]))


def test_partial_prefix_hit_loads_only_the_stored_prefix(targets, ns):
    prefill = Engine(targets, ns, "raw", seed=3)
    decode = Engine(targets, ns, "raw", seed=4)
    base = prompt(96, start=11)
    prefill.step(Request("a", base))

    # The same first 64 tokens, then something else.
    other = base[:64] + prompt(48, start=999)
    hit, _ = decode.scheduler.get_num_new_matched_tokens(Request("b", other), 0)
    assert hit == 64
    before = {name: kv.copy() for name, kv in decode.kv.items()}
    d_blocks, external = decode.step(Request("b", other))
    assert external == 64 and decode.worker.pages_loaded == 4
    assert decode.computed_pages == [4, 5, 6]
    for page in range(4):
        assert np.array_equal(decode.page(d_blocks[page]), prefill.page(
            prefill_block_of(prefill, page)))
    # Pages of other block ids were not touched by the load.
    untouched = set(range(NUM_BLOCKS)) - set(d_blocks)
    for name, kv in decode.kv.items():
        for b in untouched:
            assert np.array_equal(kv[:, b], before[name][:, b])
    # The decode engine saved the pages it computed, 4..6 (112 tokens are 7 full pages); a
    # third engine finds all 7 and computes the last.
    assert decode.worker.pages_saved == 3
    third = Engine(targets, ns, "raw", seed=5)
    assert third.scheduler.get_num_new_matched_tokens(Request("c", other), 0) == (96, False)


def prefill_block_of(engine, page):
    # The block ids of the last step's request, by page.
    return engine.last_block_ids[page]


def test_whole_prompt_stored_still_computes_the_last_page(targets, ns):
    engine = Engine(targets, ns, "raw", seed=6)
    req = Request("full", prompt(64, start=5))
    engine.step(req)
    other = Engine(targets, ns, "raw", seed=7)
    assert other.scheduler.get_num_new_matched_tokens(req, 0) == (48, False)
    assert other.scheduler.get_num_new_matched_tokens(req, 16) == (32, False)


def test_nothing_stored_is_no_hit(targets, ns):
    engine = Engine(targets, ns, "raw", seed=8)
    assert engine.scheduler.get_num_new_matched_tokens(Request("x", prompt(40)), 0) == (0, False)
    assert engine.scheduler.get_num_new_matched_tokens(Request("y", prompt(10)), 0) == (0, False)


def test_an_evicted_page_is_reported_for_recompute(targets, ns):
    prefill = Engine(targets, ns, "raw", seed=9)
    req = Request("e", prompt(80, start=3))
    prefill.step(req)
    decode = Engine(targets, ns, "raw", seed=10)
    hit, _ = decode.scheduler.get_num_new_matched_tokens(req, 0)
    assert hit == 64
    block_ids = [int(decode.free.pop()) for _ in range(5)]
    decode.scheduler.update_state_after_alloc(req, KVCacheBlocks(block_ids), hit)
    meta = decode.scheduler.build_connector_meta(SchedulerOutput(
        [NewRequestData("e", req.prompt_token_ids, (block_ids,), 0)], {"e": 16}))
    keys = kvpack.key_chain(ns, req.prompt_token_ids, BLOCK)
    assert decode.client.delete(ns, [keys[2]]) == 1  # evicted between lookup and load
    decode.worker.bind_connector_metadata(meta)
    decode.worker.start_load_kv(None)
    assert decode.worker.get_block_ids_with_load_errors() == set(block_ids[2:4])
    assert decode.worker.pages_loaded == 2
