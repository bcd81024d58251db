"""A KV connector for vLLM-style engines: prefix KV cache shared through kvpack.

KvpackConnector implements the method set of vLLM's KVConnectorBase_V1 (vLLM >= 0.9, "v1"
connector API) without importing vLLM, so an engine adopts it with a thin subclass (vLLM:
`class Connector(KVConnectorBase_V1, KvpackConnector)` registered with
KVConnectorFactory) and this package needs no vLLM to install or test.

Mapping. The engine's KV cache is paged: per layer one tensor
[2 (K,V), num_blocks, block_size, kv_heads, head_dim] (vLLM's FlashAttention layout), and a
request's tokens live in the pages its block table lists. Every full page of a prompt becomes
one kvpack block [layers][2][block_size][kv_heads][head_dim] (all layers of those tokens),
stored under the page's key in the standard key chain (kvpack.key_chain over the prompt's
token ids, `block_size` tokens per key, in namespace `namespace`, which should fingerprint
the model). A prompt whose leading pages are stored loads them instead of computing them.

Flow (vLLM's order):
  scheduler  get_num_new_matched_tokens  Lookup of the prompt's chain: the stored prefix, in
                                         whole pages, less than the whole prompt (the engine
                                         must compute at least one token)
             update_state_after_alloc    notes the pages the engine allocated to be loaded
             build_connector_meta        per scheduled new request: its keys, block table,
                                         how many leading pages to load, which pages to save
             request_finished            (False, None): saves finish inside the step
  worker     register_kv_caches          the per-layer paged tensors (torch or numpy)
             start_load_kv               fetches the pages to load and scatters each layer's
                                         K and V into the paged cache (synchronously)
             wait_for_layer_load         nothing left to wait for
             save_kv_layer               notes each layer's paged tensor after attention
             wait_for_save               gathers the computed full pages over all layers and
                                         puts them
             get_finished                (None, None): nothing is asynchronous

Failures of the store never fail inference: a lookup that fails counts as no hit, a page that
was evicted between lookup and load is reported by get_block_ids_with_load_errors() (the
engine recomputes it), and a failed save is counted in `save_errors`.

Limits: one KV-cache group (all layers share a block table); a chunked prefill saves the
pages complete after the request's first scheduled chunk; CUDA caches are filled through
host memory (kvpack.Client.get, then a copy per layer).

Thread-safety: one connector per engine role, called from the engine's one thread.
"""
import enum
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from . import _tensors
from .client import Client, KvpackError, key_chain

logger = logging.getLogger(__name__)


class KVConnectorRole(enum.Enum):
    SCHEDULER = 0
    WORKER = 1


@dataclass
class ReqMeta:
    req_id: str
    keys: List[bytes]        # the chain of the request's full prompt pages
    block_ids: List[int]     # the request's block table
    load_start: int          # pages [load_start, load_end) to load from kvpack (those before
    load_end: int            # load_start the engine already holds)
    save_start: int          # pages [save_start, save_end) to store after the forward pass
    save_end: int


@dataclass
class KvpackConnectorMetadata:
    requests: List[ReqMeta] = field(default_factory=list)


@dataclass
class KvpackConnectorConfig:
    targets: Optional[Sequence[str]] = None  # kvpack servers, or
    dns: Optional[str] = None                # a name resolving to all of them
    namespace: str = "default"               # should fingerprint the model
    block_size: int = 16                     # tokens per page (the engine's block size)
    codec: Optional[str] = None              # codec policy of saves; None = server default
    decode: str = "server"                   # "server" or "local" (fetch encoded)
    timeout: float = 30.0


def _config_from(vllm_config) -> KvpackConnectorConfig:
    """Reads kv_transfer_config.kv_connector_extra_config of a vLLM config."""
    extra = dict(getattr(getattr(vllm_config, "kv_transfer_config", None),
                         "kv_connector_extra_config", None) or {})
    cache = getattr(vllm_config, "cache_config", None)
    if cache is not None and "block_size" not in extra:
        extra["block_size"] = cache.block_size
    return KvpackConnectorConfig(**extra)


def _block_ids(ids) -> List[int]:
    """One group's block ids from vLLM's list, tuple of lists, or KVCacheBlocks."""
    if hasattr(ids, "get_block_ids"):
        ids = ids.get_block_ids()
    ids = list(ids)
    if ids and isinstance(ids[0], (list, tuple)):
        ids = list(ids[0])
    return [int(i) for i in ids]


def _stack(tensors):
    if _tensors.is_torch(tensors[0]):
        return _tensors.torch.stack(tensors)
    return _tensors.np.stack(tensors)


class KvpackConnector:
    def __init__(self, vllm_config=None, role: KVConnectorRole = KVConnectorRole.SCHEDULER, *,
                 config: Optional[KvpackConnectorConfig] = None,
                 client: Optional[Client] = None):
        self.role = role
        self.config = config if config is not None else _config_from(vllm_config)
        if client is None:
            client = Client(self.config.targets, dns=self.config.dns,
                            timeout=self.config.timeout)
        self.client = client
        # Scheduler side.
        self._load_tokens: Dict[str, int] = {}   # req_id -> tokens to load, after alloc
        # Worker side.
        self._metadata: Optional[KvpackConnectorMetadata] = None
        self._kv_caches: Dict[str, object] = {}   # layer name -> paged tensor, layer order
        self._saved_layers: Dict[str, object] = {}
        self._load_errors: set = set()
        self.save_errors = 0
        self.pages_loaded = 0
        self.pages_saved = 0

    # ---- scheduler side -------------------------------------------------------------------

    def get_num_new_matched_tokens(self, request, num_computed_tokens: int) -> Tuple[int, bool]:
        """Tokens beyond num_computed_tokens that kvpack holds for the request's prompt, in
        whole pages, and False (they load synchronously)."""
        bs = self.config.block_size
        keys = key_chain(self.config.namespace, request.prompt_token_ids, bs)
        if not keys:
            return 0, False
        try:
            hit, _ = self.client.lookup(self.config.namespace, keys)
        except KvpackError as e:
            if e.code != 5:  # NOT_FOUND: nothing stored in the namespace yet
                logger.warning("kvpack lookup failed, computing the prompt: %s", e)
            return 0, False
        hit_tokens = hit * bs
        if hit_tokens >= request.num_tokens:
            hit_tokens -= bs  # the engine must compute at least the last token
        return max(0, hit_tokens - num_computed_tokens), False

    def update_state_after_alloc(self, request, blocks, num_external_tokens: int):
        if num_external_tokens > 0:
            self._load_tokens[request.request_id] = num_external_tokens

    def build_connector_meta(self, scheduler_output) -> KvpackConnectorMetadata:
        bs = self.config.block_size
        meta = KvpackConnectorMetadata()
        scheduled = getattr(scheduler_output, "num_scheduled_tokens", None) or {}
        for new in scheduler_output.scheduled_new_reqs:
            keys = key_chain(self.config.namespace, new.prompt_token_ids, bs)
            computed = int(getattr(new, "num_computed_tokens", 0) or 0)
            load_tokens = self._load_tokens.pop(new.req_id, 0)
            load_start = computed // bs
            load_end = (computed + load_tokens) // bs if load_tokens else load_start
            done_tokens = computed + load_tokens + scheduled.get(new.req_id, len(
                new.prompt_token_ids))
            save_end = min(len(keys), done_tokens // bs)
            save_start = load_end
            meta.requests.append(ReqMeta(new.req_id, keys, _block_ids(new.block_ids),
                                         load_start, load_end, save_start, save_end))
        return meta

    def request_finished(self, request, block_ids) -> Tuple[bool, Optional[dict]]:
        self._load_tokens.pop(request.request_id, None)
        return False, None

    # ---- worker side ----------------------------------------------------------------------

    def bind_connector_metadata(self, connector_metadata: KvpackConnectorMetadata):
        self._metadata = connector_metadata

    def clear_connector_metadata(self):
        self._metadata = None
        self._saved_layers = {}

    def register_kv_caches(self, kv_caches: Dict[str, object]):
        """The engine's per-layer paged caches, in layer order: each
        [2, num_blocks, block_size, kv_heads, head_dim]."""
        for name, kv in kv_caches.items():
            if len(kv.shape) != 5 or kv.shape[0] != 2 or kv.shape[2] != self.config.block_size:
                raise ValueError(f"kvpack connector: layer {name} has shape {tuple(kv.shape)}, "
                                 f"not [2, num_blocks, {self.config.block_size}, kv_heads, "
                                 "head_dim]")
        self._kv_caches = dict(kv_caches)

    def start_load_kv(self, forward_context=None, **kwargs):
        if self._metadata is None:
            return
        layers = list(self._kv_caches.values())
        for req in self._metadata.requests:
            if req.load_end <= req.load_start:
                continue
            like = layers[0] if _tensors.is_torch(layers[0]) else None
            pages = self.client.get(self.config.namespace,
                                    req.keys[req.load_start:req.load_end],
                                    decode=self.config.decode, like=like)
            for page, block in enumerate(pages, start=req.load_start):
                block_id = req.block_ids[page]
                if block is None:  # evicted since the lookup: the engine recomputes it
                    self._load_errors.update(req.block_ids[page:req.load_end])
                    break
                if _tensors.np is not None and isinstance(block, _tensors.np.ndarray) and \
                        block.dtype == _tensors.np.uint16:
                    block = block.view(layers[0].dtype)  # bf16 bits into a bf16 cache
                for layer, kv in enumerate(layers):
                    if _tensors.is_torch(kv):
                        kv[:, block_id].copy_(block[layer], non_blocking=False)
                    else:
                        kv[:, block_id] = block[layer]
                self.pages_loaded += 1

    def wait_for_layer_load(self, layer_name: str):
        return None  # start_load_kv loaded every layer

    def save_kv_layer(self, layer_name: str, kv_layer, attn_metadata=None, **kwargs):
        self._saved_layers[layer_name] = kv_layer

    def wait_for_save(self):
        if self._metadata is None:
            return
        names = list(self._kv_caches.keys()) or list(self._saved_layers.keys())
        missing = [n for n in names if n not in self._saved_layers]
        if missing:
            raise RuntimeError(f"kvpack connector: save_kv_layer was not called for {missing}")
        layers = [self._saved_layers[n] for n in names]
        for req in self._metadata.requests:
            if req.save_end <= req.save_start:
                continue
            keys, blocks = [], []
            for page in range(req.save_start, req.save_end):
                block_id = req.block_ids[page]
                blocks.append(_stack([kv[:, block_id] for kv in layers]))
                keys.append(req.keys[page])
            dtype = "bf16" if str(getattr(layers[0], "dtype", "")) in ("bfloat16",
                                                                     "torch.bfloat16") else None
            results = self.client.put(self.config.namespace, keys, blocks,
                                      codec=self.config.codec, dtype=dtype, strict=False)
            for r in results:
                if r.error is None:
                    self.pages_saved += 1
                else:
                    self.save_errors += 1
                    logger.warning("kvpack save failed: %s", r.error)

    def get_finished(self, finished_req_ids) -> Tuple[Optional[set], Optional[set]]:
        return None, None

    def get_block_ids_with_load_errors(self) -> set:
        """Blocks whose load failed since the last call (the engine recomputes them)."""
        errors, self._load_errors = self._load_errors, set()
        return errors
