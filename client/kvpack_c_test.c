/* Exercises libkvpack.so through its C header only, against the servers listed in argv[1]
 * ("host:port,host:port"). Exit 0 when every check passes; prints each failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/kvpack_c.h"
#include "xxhash.h"

static int failures = 0;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
              #cond, kvpack_last_error());                                            \
      ++failures;                                                                     \
    }                                                                                 \
  } while (0)

enum { kBlocks = 8, kTokens = 16 };

/* Calibrations: a missing file, one that is not a calibration, and a valid one (1 layer, 1
 * head, head_dim 16, identity bases, written here byte by byte as codec/FORMAT.md says),
 * whose fingerprint comes back; a put naming it goes to servers that have not loaded it. */
static void CheckCalibrations(kvpack_client* client, const char* dir) {
  char path[512];
  uint64_t fingerprint = 0;
  snprintf(path, sizeof(path), "%s/missing.kvcal", dir);
  CHECK(kvpack_load_calibration(path, &fingerprint) == 5);
  CHECK(kvpack_load_calibration(NULL, NULL) == 3);
  snprintf(path, sizeof(path), "%s/model.kvcal", dir);
  FILE* f = fopen(path, "wb");
  CHECK(f != NULL);
  if (f == NULL) return;
  CHECK(fputs("not a calibration", f) >= 0);
  fclose(f);
  CHECK(kvpack_load_calibration(path, NULL) == 15);

  enum { kDim = 16, kBytes = 20 + 4 * 2 * kDim * kDim + 8 };
  static uint8_t bytes[kBytes];
  memset(bytes, 0, sizeof(bytes));
  memcpy(bytes, "KVPC", 4);
  bytes[4] = 1;      /* version */
  bytes[8] = 1;      /* layers */
  bytes[12] = 1;     /* kv_heads */
  bytes[16] = kDim;  /* head_dim */
  for (int m = 0; m < 2; ++m) {
    for (int r = 0; r < kDim; ++r) {
      const float one = 1.0f;
      memcpy(bytes + 20 + 4 * ((m * kDim + r) * kDim + r), &one, 4);
    }
  }
  const uint64_t checksum = XXH3_64bits(bytes, kBytes - 8);
  memcpy(bytes + kBytes - 8, &checksum, 8); /* little-endian host */
  f = fopen(path, "wb");
  CHECK(f != NULL && fwrite(bytes, 1, kBytes, f) == kBytes);
  if (f != NULL) fclose(f);
  CHECK(kvpack_load_calibration(path, &fingerprint) == KVPACK_OK);
  CHECK(fingerprint == checksum);

  char policy[64];
  snprintf(policy, sizeof(policy), "turbo_p3,calibration=%016llx",
           (unsigned long long)fingerprint);
  kvpack_layout layout = {1, 1, kDim, 256, KVPACK_BF16};
  static uint16_t tensor[2 * 256 * kDim];
  for (size_t i = 0; i < sizeof(tensor) / sizeof(tensor[0]); ++i) tensor[i] = 0x3f80; /* 1.0 */
  const uint8_t key[16] = {0xca, 0x11};
  kvpack_block block;
  memset(&block, 0, sizeof(block));
  block.key = (const char*)key;
  block.key_len = sizeof(key);
  block.layout = layout;
  block.data = tensor;
  block.data_len = sizeof(tensor);
  kvpack_put_result result;
  /* The servers run without --calibrations. */
  CHECK(kvpack_put(client, "c-abi-calibrated", &block, 1, policy, 0, &result) == KVPACK_OK);
  CHECK(result.code == 9);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s host:port[,host:port...]\n", argv[0]);
    return 2;
  }
  CHECK(kvpack_abi_version() == KVPACK_C_ABI_VERSION);

  kvpack_options options;
  kvpack_options_init(&options);
  kvpack_client* client = NULL;

  /* Bad options are refused with a message. */
  options.targets = argv[1];
  options.dns = "localhost:1";
  CHECK(kvpack_connect(&options, &client) == 3 && client == NULL);
  CHECK(strstr(kvpack_last_error(), "exactly one") != NULL);
  options.dns = NULL;
  options.timeout_ms = 0;
  CHECK(kvpack_connect(&options, &client) == 3);
  options.timeout_ms = 10000;
  CHECK(kvpack_connect(&options, &client) == KVPACK_OK && client != NULL);

  /* The key chain of a prompt. */
  const char* ns = "c-abi";
  int32_t tokens[kBlocks * kTokens + 5];
  for (int i = 0; i < (int)(sizeof(tokens) / sizeof(tokens[0])); ++i) tokens[i] = i * 7 + 1;
  CHECK(kvpack_key_chain(ns, strlen(ns), tokens, sizeof(tokens) / sizeof(tokens[0]), kTokens,
                         NULL, 0) == kBlocks);
  uint8_t keys[kBlocks][16];
  CHECK(kvpack_key_chain(ns, strlen(ns), tokens, sizeof(tokens) / sizeof(tokens[0]), kTokens,
                         &keys[0][0], kBlocks) == kBlocks);
  const char* key_ptrs[kBlocks];
  size_t key_lens[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    key_ptrs[i] = (const char*)keys[i];
    key_lens[i] = 16;
  }

  /* Put raw bf16 blocks. */
  kvpack_layout layout = {2, 2, 64, kTokens, KVPACK_BF16};
  const size_t raw_bytes = (size_t)2 * 2 * kTokens * 2 * 64 * 2;
  uint8_t* data = malloc(raw_bytes * kBlocks);
  for (size_t i = 0; i < raw_bytes * kBlocks; ++i) data[i] = (uint8_t)(i * 131 + (i >> 9));
  kvpack_block blocks[kBlocks];
  kvpack_put_result results[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    blocks[i].key = key_ptrs[i];
    blocks[i].key_len = 16;
    blocks[i].layout = layout;
    blocks[i].data = data + raw_bytes * i;
    blocks[i].data_len = raw_bytes;
  }
  CHECK(kvpack_put(client, ns, blocks, kBlocks, "raw", 0, results) == KVPACK_OK);
  for (int i = 0; i < kBlocks; ++i) {
    CHECK(results[i].code == KVPACK_OK && results[i].raw_bytes == raw_bytes);
    CHECK(results[i].tier == KVPACK_TIER_RAM);
  }

  /* Get decoded: the same bytes. */
  kvpack_blocks* got = NULL;
  CHECK(kvpack_get(client, ns, key_ptrs, key_lens, kBlocks, KVPACK_WANT_DECODED, &got) ==
        KVPACK_OK);
  CHECK(kvpack_blocks_count(got) == kBlocks);
  for (int i = 0; i < kBlocks; ++i) {
    size_t len = 0;
    const void* bytes = kvpack_blocks_data(got, i, &len);
    CHECK(kvpack_blocks_found(got, i) && len == raw_bytes &&
          memcmp(bytes, data + raw_bytes * i, raw_bytes) == 0);
    kvpack_layout seen;
    int32_t tier = -1, encoding = -1;
    const char* codec = NULL;
    CHECK(kvpack_blocks_info(got, i, &seen, &tier, &encoding, &codec) == KVPACK_OK);
    CHECK(seen.layers == 2 && seen.tokens == kTokens && seen.dtype == KVPACK_BF16);
    CHECK(encoding == KVPACK_WANT_DECODED && strstr(codec, "raw") != NULL);
  }
  kvpack_blocks_free(got);

  /* Get encoded and decode here, and on a GPU when there is one. */
  CHECK(kvpack_get(client, ns, key_ptrs, key_lens, kBlocks, KVPACK_WANT_ENCODED, &got) ==
        KVPACK_OK);
  uint8_t* decoded = malloc(raw_bytes);
  for (int i = 0; i < kBlocks; ++i) {
    CHECK(kvpack_blocks_decode(got, i, decoded, raw_bytes) == KVPACK_OK);
    CHECK(memcmp(decoded, data + raw_bytes * i, raw_bytes) == 0);
  }
  CHECK(kvpack_blocks_decode(got, 0, decoded, raw_bytes - 1) == 3);
  {
    /* No GPU here: UNAVAILABLE with a reason. (A host pointer is never written then.) */
    const kvpack_code gpu = kvpack_blocks_decode_on_gpu(got, 0, 0, decoded);
    CHECK(gpu == 14 || gpu == 3 || gpu == KVPACK_OK);
    if (gpu != KVPACK_OK) printf("gpu decode: code %d: %s\n", gpu, kvpack_last_error());
  }
  kvpack_blocks_free(got);

  /* Lookup across the servers, before and after a delete in the middle of the chain. */
  uint32_t prefix = 0;
  int32_t tiers[kBlocks];
  CHECK(kvpack_lookup(client, ns, key_ptrs, key_lens, kBlocks, &prefix, tiers) == KVPACK_OK);
  CHECK(prefix == kBlocks && tiers[kBlocks - 1] == KVPACK_TIER_RAM);
  uint32_t deleted = 0;
  CHECK(kvpack_delete(client, ns, &key_ptrs[5], &key_lens[5], 1, &deleted) == KVPACK_OK);
  CHECK(deleted == 1);
  CHECK(kvpack_lookup(client, ns, key_ptrs, key_lens, kBlocks, &prefix, NULL) == KVPACK_OK);
  CHECK(prefix == 5);
  CHECK(kvpack_get(client, ns, key_ptrs, key_lens, kBlocks, KVPACK_WANT_DECODED, &got) ==
        KVPACK_OK);
  CHECK(!kvpack_blocks_found(got, 5) && kvpack_blocks_found(got, 4));
  CHECK(kvpack_blocks_decode(got, 5, decoded, raw_bytes) == 9); /* FAILED_PRECONDITION */
  kvpack_blocks_free(got);

  /* Stats: one JSON object per server. */
  char* json = NULL;
  CHECK(kvpack_stats(client, &json) == KVPACK_OK && json != NULL);
  int servers = 1;
  for (const char* p = argv[1]; *p; ++p) servers += *p == ',';
  int objects = 0;
  for (const char* p = json; (p = strstr(p, "\"target\":")) != NULL; ++p) ++objects;
  CHECK(objects == servers);
  CHECK(strstr(json, "\"c-abi\"") != NULL);
  printf("stats: %s\n", json);
  kvpack_string_free(json);

  /* Bad input: codes and messages, never a crash. */
  CHECK(kvpack_put(client, NULL, blocks, 1, NULL, 0, results) == 3);
  blocks[0].layout.dtype = 9;
  CHECK(kvpack_put(client, ns, blocks, 1, NULL, 0, results) == 3);
  CHECK(strstr(kvpack_last_error(), "dtype") != NULL);
  blocks[0].layout = layout;
  blocks[0].data_len = raw_bytes - 2;
  CHECK(kvpack_put(client, ns, blocks, 1, NULL, 0, results) == 3);
  blocks[0].data_len = raw_bytes;
  CHECK(kvpack_put(client, ns, blocks, 1, "no-such-codec", 0, results) == KVPACK_OK);
  CHECK(results[0].code == 3 && results[0].message[0] != '\0');
  CHECK(kvpack_get(client, "never-written", key_ptrs, key_lens, 2, 0, &got) == 5);
  CHECK(got == NULL);
  CHECK(kvpack_get(client, ns, key_ptrs, key_lens, 2, 7, &got) == 3);
  CHECK(kvpack_get(client, ns, NULL, NULL, 2, 0, &got) == 3);

  CHECK(kvpack_delete(client, ns, key_ptrs, key_lens, kBlocks, &deleted) == KVPACK_OK);
  CHECK(deleted == kBlocks - 1);
  const char* tmp = getenv("TEST_TMPDIR");
  CheckCalibrations(client, tmp != NULL ? tmp : "/tmp");
  kvpack_close(client);
  free(decoded);
  free(data);
  if (failures == 0) printf("kvpack_c_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
