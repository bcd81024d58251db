#include "service/service_context.h"

namespace kvpack {

BlockCodec* ServiceContext::EncoderFor(const BlockLayout& layout) const {
  (void)layout;
  return gpu_codec != nullptr ? gpu_codec : cpu_codec;
}

BlockCodec* ServiceContext::DecoderFor(uint64_t encoded_bytes) const {
  (void)encoded_bytes;
  return gpu_codec != nullptr ? gpu_codec : cpu_codec;
}

}  // namespace kvpack
