// Tensors: the dtype table, parsing AI.TENSORSET's arguments, replies, and
// the "tensor" data type's persistence (RDB save/load, AOF rewrite).
#pragma once

#include <string>
#include <string_view>

#include <ATen/ATen.h>

#include "module_api.h"

namespace fzai {

// RedisAI's dtype names and their LibTorch types.
struct DType {
  const char* name;
  at::ScalarType type;
};
const DType* dtype_by_name(std::string_view name);  // case-insensitive; nullptr if unknown
const DType* dtype_of(at::ScalarType type);         // nullptr if RedisAI has no name for it

// Largest tensor we accept or create (Redis's default proto-max-bulk-len).
constexpr std::size_t kMaxTensorBytes = 512ull << 20;
constexpr int kMaxDims = 32;

// The value stored in a key of the tensor type: always a contiguous CPU tensor
// in Redis's memory, never shared with a model run (runs get copies).
struct Tensor {
  at::Tensor value;
};

extern RedisModuleType* tensor_type;

// Build a tensor from "TYPE d1 [d2 ...] [BLOB data | VALUES v ...]" (argv[0] is TYPE).
// On bad input returns false with `error` set to the reply text.
bool parse_tensor(RedisModuleString** argv, int argc, at::Tensor& out, std::string& error);

// Replies. `keyvalue` picks RedisAI 1.x's ["dtype", T, "shape", [...], ...] over
// 0.x's positional [T, [...], data].
enum class TensorFormat { kNone, kBlob, kValues };
void reply_tensor(RedisModuleCtx* ctx, const at::Tensor& t, bool keyvalue, bool meta, TensorFormat data);

// Whether a model's output can be stored and replicated as a tensor here (a
// known dtype, 1..kMaxDims positive dims, at most kMaxTensorBytes); if not,
// returns false with `error` set.
bool storable(const at::Tensor& t, std::string& error);

// Multiply `bytes` by the dim `d`; false when d is not in 1..INT64_MAX or the
// product passes kMaxTensorBytes (checked without overflowing).
bool add_dim(uint64_t d, std::size_t& bytes);

// A contiguous copy of a (storable) model output in Redis's memory, ready to
// be stored; throws std::bad_alloc when Redis has no memory for it.
at::Tensor to_redis_memory(const at::Tensor& t);

// Store `t` at `key` (opened for writing), replacing a tensor already there.
void set_tensor(RedisModuleKey* key, at::Tensor t);

// Send "AI.TENSORSET key TYPE dims... BLOB data" to replicas and the AOF.
void replicate_tensor(RedisModuleCtx* ctx, const char* key, std::size_t key_len, const at::Tensor& t);

// Register the data type; false on failure.
bool register_tensor_type(RedisModuleCtx* ctx);

}  // namespace fzai
