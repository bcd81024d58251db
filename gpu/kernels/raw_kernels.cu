// raw (codec/FORMAT.md, id 0) on the GPU: the payload is the segment's elements verbatim,
// token rows back to back. One launch copies every segment of a batch; a block copies a
// 16 KiB piece of a segment's byte stream. Dense segments (token stride = row) are one byte
// run, copied with aligned 16-byte stores and shifted aligned 16-byte loads (BlockCopyBytes);
// strided ones are staged in shared memory so that the side that
// may sit at any byte offset inside a block (the payload) is written or read with aligned
// 16-byte accesses, and the raw side with 4-byte accesses where its alignment allows.
#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

constexpr uint32_t kPiece = 16384;

// Address of byte k of the segment's dense stream inside the caller's raw layout.
// Segments are at most 2 GiB (kMaxBlockRawBytes), so k fits 32 bits.
__device__ __forceinline__ uint8_t* RawByte(const SegmentIo& io, uint32_t row_bytes,
                                            uint64_t pitch, uint32_t k) {
  const uint32_t row = k / row_bytes;
  return static_cast<uint8_t*>(io.raw) + row * pitch + (k - row * row_bytes);
}

template <bool kEncode>
__global__ void __launch_bounds__(kThreads) RawKernel(SegmentBatch b, uint32_t elem_bytes) {
  __shared__ __align__(16) uint8_t stage[StageBytes(kPiece)];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t row_bytes = b.kv_heads * b.head_dim * elem_bytes;
  const uint64_t total = uint64_t{b.tokens} * row_bytes;
  const uint64_t pitch = io.token_stride * elem_bytes;
  const uint32_t c0 = blockIdx.x * kPiece;
  if (c0 >= total) return;
  const uint32_t n = static_cast<uint32_t>(min(uint64_t{kPiece}, total - c0));
  uint8_t* const enc = io.encoded + c0;
  if (pitch == row_bytes) {
    // Dense rows: the segment is one byte run, copied with 16-byte vectors in flight.
    uint8_t* const raw = static_cast<uint8_t*>(io.raw) + c0;
    if (kEncode) {
      BlockCopyBytes<kThreads>(enc, raw, n);
    } else {
      BlockCopyBytes<kThreads>(raw, enc, n);
    }
    return;
  }
  const uint32_t shift = StageShift(enc);
  // 4-byte groups stay inside one row and are 4-byte aligned in the raw layout when:
  const bool words = row_bytes % 4 == 0 && pitch % 4 == 0 &&
                     reinterpret_cast<uintptr_t>(io.raw) % 4 == 0 && c0 % 4 == 0;
  if (!kEncode) {
    FillStage(stage, enc, n);
    __syncthreads();
  }
  for (uint32_t off = threadIdx.x * 4; off < n; off += kThreads * 4) {
    const uint32_t len = min(4u, n - off);
    if (words && len == 4) {
      uint32_t* p = reinterpret_cast<uint32_t*>(RawByte(io, row_bytes, pitch, c0 + off));
      if (kEncode) {
        StageBytesLE(stage, shift + off, *p, 4);
      } else {
        *p = static_cast<uint32_t>(ReadBytesLE(stage, shift + off, 4));
      }
    } else {
      for (uint32_t j = 0; j < len; ++j) {
        uint8_t* p = RawByte(io, row_bytes, pitch, c0 + off + j);
        if (kEncode) {
          stage[shift + off + j] = *p;
        } else {
          *p = stage[shift + off + j];
        }
      }
    }
  }
  if (kEncode) {
    __syncthreads();
    FlushStage(stage, enc, n);
  }
}

template <bool kEncode>
cudaError_t LaunchRaw(const SegmentBatch& b, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  const uint64_t total = uint64_t{b.tokens} * b.kv_heads * b.head_dim * ElemBytes(b.elem);
  const uint64_t pieces = (total + kPiece - 1) / kPiece;
  if (pieces > 0x7fffffffull || uint64_t{b.kv_heads} * b.head_dim * ElemBytes(b.elem) > 0xffffffffull) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<uint32_t>(pieces), b.count);
  RawKernel<kEncode><<<grid, kThreads, 0, stream>>>(b, ElemBytes(b.elem));
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchRawEncode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchRaw<true>(batch, stream);
}

cudaError_t LaunchRawDecode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchRaw<false>(batch, stream);
}

}  // namespace gpu
}  // namespace kvpack
