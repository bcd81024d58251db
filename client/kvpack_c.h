/* kvpack's C ABI: the client library (client/kvpack_client.h, client/sharded_client.h) behind
 * opaque handles, for serving stacks written in C, Rust, Python (python/kvpack, over ctypes)
 * or anything else with a C FFI. Built as libkvpack.so (//client:libkvpack.so); only the
 * kvpack_* symbols are exported.
 *
 *   kvpack_options options;
 *   kvpack_options_init(&options);
 *   options.targets = "10.0.0.7:50051,10.0.0.8:50051";   (or options.dns)
 *   kvpack_client* client;
 *   if (kvpack_connect(&options, &client) != KVPACK_OK)
 *     fprintf(stderr, "%s\n", kvpack_last_error());
 *
 * Errors. Every function that can fail returns a kvpack_code: 0 (KVPACK_OK) or one of gRPC's
 * canonical codes (the same numbers as grpc::StatusCode and absl::StatusCode), never throws
 * and never aborts on bad input. The message of the last failure on the calling thread is
 * kvpack_last_error() (like dlerror(): thread-local, valid until the next kvpack call on that
 * thread). The codes mean what they mean for the C++ client: INVALID_ARGUMENT (3) a bad
 * argument, NOT_FOUND (5) a namespace no server holds, RESOURCE_EXHAUSTED (8) the server is
 * at its memory bound, UNAVAILABLE (14) the servers could not be reached, DEADLINE_EXCEEDED
 * (4), PERMISSION_DENIED (7), UNAUTHENTICATED (16), DATA_LOSS (15) corrupt bytes.
 *
 * Sharding. A client spreads keys over every server of `targets` (or every address `dns`
 * resolves to, re-resolved periodically) by rendezvous hashing; with one target it is an
 * ordinary client of one server. A server that is down costs only its keys: gets and lookups
 * see them as misses, puts report a per-block error (client/sharded_client.h).
 *
 * Ownership. Strings and buffers passed in are borrowed for the duration of the call. Handles
 * returned (kvpack_client, kvpack_blocks) and strings returned through char** belong to the
 * caller, who releases them with kvpack_close, kvpack_blocks_free and kvpack_string_free.
 * Pointers returned by kvpack_blocks_* accessors stay valid until kvpack_blocks_free.
 *
 * Threads. A kvpack_client may be used from many threads at once (calls run concurrently).
 * A kvpack_blocks is thread-compatible: read it from several threads, free it from one.
 */
#ifndef KVPACK_CLIENT_KVPACK_C_H_
#define KVPACK_CLIENT_KVPACK_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVPACK_C_ABI_VERSION 1

typedef int kvpack_code;
#define KVPACK_OK 0

/* Element types, as in codec/block_layout.h. */
#define KVPACK_FP16 1
#define KVPACK_BF16 2
#define KVPACK_FP32 3

/* Where a block lives on its server. */
#define KVPACK_TIER_UNSPECIFIED 0
#define KVPACK_TIER_RAM 1
#define KVPACK_TIER_DISK 2
#define KVPACK_TIER_DEVICE 3 /* the server's GPU memory (--device_tier) */

/* What a get returns: raw tensor bytes (decoded by the server), or the stored encoded block
 * for the caller to decode (kvpack_blocks_decode, kvpack_blocks_decode_on_gpu). */
#define KVPACK_WANT_DECODED 0
#define KVPACK_WANT_ENCODED 1

typedef struct kvpack_client kvpack_client;
typedef struct kvpack_blocks kvpack_blocks;

/* A block's shape: [layers][2 (K,V)][tokens][kv_heads][head_dim] of `dtype` (KVPACK_BF16...). */
typedef struct kvpack_layout {
  uint32_t layers;
  uint32_t kv_heads;
  uint32_t head_dim;
  uint32_t tokens;
  int32_t dtype;
} kvpack_layout;

typedef struct kvpack_options {
  /* Exactly one of the two: a comma-separated list of "host:port", or "name:port" whose
   * addresses are the servers. */
  const char* targets;
  const char* dns;
  int64_t timeout_ms;          /* deadline of each call (with its retries); default 30000 */
  int32_t max_retries;         /* extra attempts on UNAVAILABLE per server; default 2 */
  int32_t connections;         /* TCP connections per server; default 1 */
  int64_t resolve_interval_ms; /* how often `dns` is resolved again; default 30000 */
  int64_t down_interval_ms;    /* how long a server found down is skipped; default 1000 */
  const char* token;           /* bearer token, or NULL */
  /* TLS: set tls = 1 to use it; the PEM files may be NULL (system roots, no client cert). */
  int32_t tls;
  const char* tls_ca_file;
  const char* tls_cert_file;
  const char* tls_key_file;
  const char* tls_server_name;
} kvpack_options;

/* One block to put. `data` holds exactly the layout's raw bytes. */
typedef struct kvpack_block {
  const char* key;
  size_t key_len;
  kvpack_layout layout;
  const void* data;
  size_t data_len;
} kvpack_block;

/* The outcome of one block of a put. */
typedef struct kvpack_put_result {
  kvpack_code code;      /* KVPACK_OK when stored */
  int32_t tier;          /* KVPACK_TIER_* */
  uint64_t raw_bytes;
  uint64_t encoded_bytes;
  char message[256];     /* why not stored (truncated), "" when stored */
} kvpack_put_result;

/* The message of the calling thread's last failed kvpack call ("" if none). */
const char* kvpack_last_error(void);

/* KVPACK_C_ABI_VERSION of the library (check it against the header's). */
int kvpack_abi_version(void);

/* Fills `options` with the defaults (every pointer NULL). */
void kvpack_options_init(kvpack_options* options);

/* Connects to the servers (lazily: a server that is down is found out by the first call that
 * needs it). On success *out is a new client. INVALID_ARGUMENT for bad options; UNAVAILABLE
 * when `dns` does not resolve. */
kvpack_code kvpack_connect(const kvpack_options* options, kvpack_client** out);

/* Closes the client; NULL is allowed. No call on it may be in flight. */
void kvpack_close(kvpack_client* client);

/* Stores `count` blocks in namespace `ns` (NUL-terminated). `codec` is a codec policy
 * ("int8", "raw", "k=int8,v=turbo3", ...) or NULL/"" for the server's default; `durable`
 * non-zero acknowledges a block only once the server's disk holds it. `results` (count
 * entries) receives each block's outcome. Returns OK when the request was sent (look at each
 * result: a block whose server is down has UNAVAILABLE), INVALID_ARGUMENT when nothing was
 * sent because a block is malformed. */
kvpack_code kvpack_put(kvpack_client* client, const char* ns, const kvpack_block* blocks,
                       size_t count, const char* codec, int durable,
                       kvpack_put_result* results);

/* Fetches `count` keys (keys[i] of key_lens[i] bytes) from `ns`. On success *out holds one
 * entry per key, in order; a key that is not stored (or whose server is down) is not found. */
kvpack_code kvpack_get(kvpack_client* client, const char* ns, const char* const* keys,
                       const size_t* key_lens, size_t count, int want, kvpack_blocks** out);

/* How many leading keys of the chain `keys` are stored (*prefix_length), and, when `tiers`
 * is not NULL, the tier of each of those (tiers has room for `count` entries). */
kvpack_code kvpack_lookup(kvpack_client* client, const char* ns, const char* const* keys,
                          const size_t* key_lens, size_t count, uint32_t* prefix_length,
                          int32_t* tiers);

/* Deletes the keys; *deleted (may be NULL) counts those that were stored. */
kvpack_code kvpack_delete(kvpack_client* client, const char* ns, const char* const* keys,
                          const size_t* key_lens, size_t count, uint32_t* deleted);

/* Every server's counters as a JSON array, one object per server:
 *   {"id","target","code","message","ram":{"bytes","blocks","capacity_bytes","hits",
 *    "evictions"},"disk":{...},"misses","raw_bytes_in","encoded_bytes_in",
 *    "compression_ratio","default_codec","device","namespaces":[...]}
 * A server that did not answer has a non-zero "code". *json_out is released with
 * kvpack_string_free. */
kvpack_code kvpack_stats(kvpack_client* client, char** json_out);

void kvpack_string_free(char* s);

/* The key chain of client/key_chain.h: the keys of the token_count / tokens_per_block full
 * blocks of `tokens`, 16 bytes each, written one after the other into `keys_out`, which has
 * room for `capacity` keys. Returns the number of keys of the chain (write at most
 * `capacity`), so a call with capacity 0 sizes the buffer. */
size_t kvpack_key_chain(const char* ns, size_t ns_len, const int32_t* tokens,
                        size_t token_count, uint32_t tokens_per_block, uint8_t* keys_out,
                        size_t capacity);

/* Accessors of a get's answer; i < kvpack_blocks_count(). */
size_t kvpack_blocks_count(const kvpack_blocks* blocks);
int kvpack_blocks_found(const kvpack_blocks* blocks, size_t i);
/* The bytes: raw tensor (decoded) or the encoded block; NULL/0 when not found. */
const void* kvpack_blocks_data(const kvpack_blocks* blocks, size_t i, size_t* len);
/* Layout, tier, what the bytes hold (KVPACK_WANT_*), and the codec policy (NUL-terminated). */
kvpack_code kvpack_blocks_info(const kvpack_blocks* blocks, size_t i, kvpack_layout* layout,
                               int32_t* tier, int32_t* encoding, const char** codec);
/* Why a key was not found when that was an error (DATA_LOSS for a corrupt block,
 * UNAVAILABLE for a server that is down): the code, and its message in *message. */
kvpack_code kvpack_blocks_error(const kvpack_blocks* blocks, size_t i, const char** message);
/* Decodes entry i (fetched encoded, or decoded: then it is copied) on this CPU into `dst`,
 * which has room for dst_len >= the layout's raw bytes. FAILED_PRECONDITION if not found. */
kvpack_code kvpack_blocks_decode(const kvpack_blocks* blocks, size_t i, void* dst,
                                 size_t dst_len);
/* Decodes entry i (fetched with KVPACK_WANT_ENCODED) on CUDA device `device` straight into
 * `device_dst`, a dense device tensor of the layout's raw bytes. UNAVAILABLE when there is
 * no usable GPU (or the library was built without CUDA); UNIMPLEMENTED when the GPU has no
 * kernel for one of the block's codecs (use kvpack_blocks_decode). */
kvpack_code kvpack_blocks_decode_on_gpu(const kvpack_blocks* blocks, size_t i, int device,
                                        void* device_dst);
void kvpack_blocks_free(kvpack_blocks* blocks);

/* Loads a calibration file (codec/calibration.h, made by kvpack_eval --calibration_out) into
 * this process, so that blocks coded with it (the turbo_p* codecs) decode here
 * (kvpack_blocks_decode); without it their decode is FAILED_PRECONDITION (9). *fingerprint
 * (may be NULL) receives the fingerprint policies name it by (calibration=HEX16). NOT_FOUND or
 * PERMISSION_DENIED for the file, DATA_LOSS for bytes that are not a calibration. Loading the
 * same file again is harmless; calibrations stay loaded until the process exits. */
kvpack_code kvpack_load_calibration(const char* path, uint64_t* fingerprint);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVPACK_CLIENT_KVPACK_C_H_ */
