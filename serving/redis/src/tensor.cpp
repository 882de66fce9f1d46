#include "tensor.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "guard.hpp"
#include "keys.hpp"

namespace fzai {

RedisModuleType* tensor_type = nullptr;

bool add_dim(uint64_t d, std::size_t& bytes) {
  // Refuse before multiplying past size_t, and before anything is allocated.
  return d >= 1 && d <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
         !__builtin_mul_overflow(bytes, static_cast<std::size_t>(d), &bytes) && bytes <= kMaxTensorBytes;
}

namespace {

const DType kDTypes[] = {
    {"FLOAT", at::kFloat}, {"DOUBLE", at::kDouble}, {"INT8", at::kChar},   {"INT16", at::kShort},
    {"INT32", at::kInt},   {"INT64", at::kLong},    {"UINT8", at::kByte},  {"BOOL", at::kBool},
};

constexpr const char* kBadShape = "ERR invalid or negative value found in tensor shape";
constexpr const char* kBadLength = "ERR data length does not match tensor shape and type";
constexpr const char* kNoMemory = "ERR out of memory for the tensor";

// Give `data` (from Redis's allocator) to a tensor that frees it with Redis's
// allocator: stored tensors count in used_memory and maxmemory, and LibTorch
// cannot resize them (their storage is not resizable).
at::Tensor wrap_redis_memory(void* data, const std::vector<int64_t>& dims, at::ScalarType type) {
  try {
    return at::from_blob(data, dims, [](void* p) { rm::api.Free(p); }, at::TensorOptions().dtype(type));
  } catch (...) {
    rm::api.Free(data);
    throw;
  }
}

// A tensor of `bytes` (already checked against kMaxTensorBytes) in Redis's
// memory; undefined when Redis has no memory for it (TryAlloc). Zeros come
// from Calloc, whose fresh pages cost no RSS until written; Redis has no
// TryCalloc in 7.0, so there, as for its own allocations, an allocator
// failure stops the server (bounded by the 512 MiB cap and by maxmemory,
// which counts this memory; the command is deny-oom).
at::Tensor redis_tensor(const std::vector<int64_t>& dims, at::ScalarType type, std::size_t bytes, bool zeroed) {
  void* data = zeroed ? rm::api.Calloc(1, bytes) : rm::api.TryAlloc(bytes);
  if (!data) return at::Tensor();
  return wrap_redis_memory(data, dims, type);
}

// Fill element `i` of `t` from a VALUES argument; false if it is not a value of that type.
bool put_value(at::Tensor& t, int64_t i, RedisModuleString* s) {
  const at::ScalarType type = t.scalar_type();
  if (type == at::kFloat || type == at::kDouble) {
    double v = 0;
    if (rm::api.StringToDouble(s, &v) != rm::OK) return false;
    if (type == at::kFloat) {
      // A finite double outside float's range would become inf silently.
      if (std::isfinite(v) && std::fabs(v) > std::numeric_limits<float>::max()) return false;
      t.data_ptr<float>()[i] = static_cast<float>(v);
    } else {
      t.data_ptr<double>()[i] = v;
    }
    return true;
  }
  long long v = 0;
  if (rm::api.StringToLongLong(s, &v) != rm::OK) return false;
  switch (type) {
    case at::kChar:
      if (v < INT8_MIN || v > INT8_MAX) return false;
      t.data_ptr<int8_t>()[i] = static_cast<int8_t>(v);
      return true;
    case at::kShort:
      if (v < INT16_MIN || v > INT16_MAX) return false;
      t.data_ptr<int16_t>()[i] = static_cast<int16_t>(v);
      return true;
    case at::kInt:
      if (v < INT32_MIN || v > INT32_MAX) return false;
      t.data_ptr<int32_t>()[i] = static_cast<int32_t>(v);
      return true;
    case at::kLong:
      t.data_ptr<int64_t>()[i] = v;
      return true;
    case at::kByte:
      if (v < 0 || v > UINT8_MAX) return false;
      t.data_ptr<uint8_t>()[i] = static_cast<uint8_t>(v);
      return true;
    case at::kBool:
      if (v != 0 && v != 1) return false;
      t.data_ptr<bool>()[i] = v == 1;
      return true;
    default:
      return false;
  }
}

// `wide`: the integer types as int64, made before any reply is sent (an
// exception half-way through a reply would break the connection's protocol).
void reply_values(RedisModuleCtx* ctx, const at::Tensor& t, const at::Tensor& wide) {
  const int64_t n = t.numel();
  rm::api.ReplyWithArray(ctx, n);
  switch (t.scalar_type()) {
    case at::kFloat:
      for (int64_t i = 0; i < n; ++i) rm::api.ReplyWithDouble(ctx, t.data_ptr<float>()[i]);
      break;
    case at::kDouble:
      for (int64_t i = 0; i < n; ++i) rm::api.ReplyWithDouble(ctx, t.data_ptr<double>()[i]);
      break;
    default:
      for (int64_t i = 0; i < n; ++i) rm::api.ReplyWithLongLong(ctx, wide.data_ptr<int64_t>()[i]);
  }
}

void reply_shape(RedisModuleCtx* ctx, const at::Tensor& t) {
  rm::api.ReplyWithArray(ctx, t.dim());
  for (int64_t d : t.sizes()) rm::api.ReplyWithLongLong(ctx, d);
}

// --- data type callbacks ---

// An RDB file or a RESTORE payload is data from outside: every number in it is
// checked before it sizes anything, and a short read (HANDLE_IO_ERRORS) or any
// bad value makes the load answer NULL, which Redis reports as bad data.
void* load_tensor(RedisModuleIO* rdb, int encver) {
  if (encver != 0) return nullptr;
  const uint64_t type_index = rm::api.LoadUnsigned(rdb);
  const uint64_t ndims = rm::api.LoadUnsigned(rdb);
  if (rm::api.IsIOError(rdb) || type_index >= std::size(kDTypes) || ndims < 1 || ndims > kMaxDims) return nullptr;
  const at::ScalarType type = kDTypes[type_index].type;
  std::vector<int64_t> dims;
  std::size_t bytes = c10::elementSize(type);
  for (uint64_t k = 0; k < ndims; ++k) {
    const uint64_t d = rm::api.LoadUnsigned(rdb);
    if (rm::api.IsIOError(rdb) || !add_dim(d, bytes)) return nullptr;
    dims.push_back(static_cast<int64_t>(d));
  }
  std::size_t len = 0;
  char* data = rm::api.LoadStringBuffer(rdb, &len);
  if (rm::api.IsIOError(rdb) || data == nullptr || len != bytes) {
    if (data) rm::api.Free(data);
    return nullptr;
  }
  // Redis allocated the buffer: the tensor keeps it, no copy.
  return new Tensor{wrap_redis_memory(data, dims, type)};
}

void* rdb_load(RedisModuleIO* rdb, int encver) {
  void* value = or_on_exception<void*>(nullptr, "loading a tensor", [&] { return load_tensor(rdb, encver); });
  if (!value) rm::api.Log(nullptr, "warning", "fizbuz-ai: refused a tensor from an RDB or RESTORE payload: bad or short data");
  return value;
}

void rdb_save(RedisModuleIO* rdb, void* value) {
  or_on_exception(0, "saving a tensor", [&] {
    const at::Tensor& t = static_cast<Tensor*>(value)->value;
    const DType* dt = dtype_of(t.scalar_type());
    rm::api.SaveUnsigned(rdb, static_cast<uint64_t>(dt - kDTypes));
    rm::api.SaveUnsigned(rdb, static_cast<uint64_t>(t.dim()));
    for (int64_t d : t.sizes()) rm::api.SaveUnsigned(rdb, static_cast<uint64_t>(d));
    rm::api.SaveStringBuffer(rdb, static_cast<const char*>(t.data_ptr()), t.nbytes());
    return 0;
  });
}

// The command list that recreates `t` (dims as strings, for the "v" format).
std::vector<RedisModuleString*> dim_strings(const at::Tensor& t) {
  std::vector<RedisModuleString*> dims;
  for (int64_t d : t.sizes()) {
    const std::string text = std::to_string(d);
    dims.push_back(rm::api.CreateString(nullptr, text.data(), text.size()));
  }
  return dims;
}

void aof_rewrite(RedisModuleIO* aof, RedisModuleString* key, void* value) {
  or_on_exception(0, "rewriting a tensor to the AOF", [&] {
    const at::Tensor& t = static_cast<Tensor*>(value)->value;
    auto dims = dim_strings(t);
    rm::api.EmitAOF(aof, "AI.TENSORSET", "scvcb", key, dtype_of(t.scalar_type())->name, dims.data(),
                    dims.size(), "BLOB", static_cast<const char*>(t.data_ptr()), t.nbytes());
    for (auto* s : dims) rm::api.FreeString(nullptr, s);
    return 0;
  });
}

size_t mem_usage(const void* value) {
  return sizeof(Tensor) + static_cast<const Tensor*>(value)->value.nbytes();
}

void free_value(void* value) { delete static_cast<Tensor*>(value); }

}  // namespace

const DType* dtype_by_name(std::string_view name) {
  for (const auto& dt : kDTypes) {
    if (iequals(name, dt.name)) return &dt;
  }
  return nullptr;
}

const DType* dtype_of(at::ScalarType type) {
  for (const auto& dt : kDTypes) {
    if (dt.type == type) return &dt;
  }
  return nullptr;
}

bool parse_tensor(RedisModuleString** argv, int argc, at::Tensor& out, std::string& error) {
  const DType* dt = dtype_by_name(arg(argv[0]));
  if (!dt) {
    error = "ERR invalid data type";
    return false;
  }
  std::vector<int64_t> dims;
  std::size_t bytes = c10::elementSize(dt->type);
  int i = 1;
  for (; i < argc; ++i) {
    const auto word = arg(argv[i]);
    if (iequals(word, "BLOB") || iequals(word, "VALUES")) break;
    long long d = 0;
    if (!arg_int(argv[i], 1, std::numeric_limits<int64_t>::max(), d)) {
      error = kBadShape;
      return false;
    }
    if (dims.size() == kMaxDims || !add_dim(static_cast<uint64_t>(d), bytes)) {
      error = "ERR tensor is too large (at most " + std::to_string(kMaxDims) + " dims and " +
              std::to_string(kMaxTensorBytes) + " bytes)";
      return false;
    }
    dims.push_back(d);
  }
  if (dims.empty()) {
    error = "ERR wrong number of arguments: the tensor has no shape";
    return false;
  }
  const int64_t numel = static_cast<int64_t>(bytes / c10::elementSize(dt->type));
  // Every length is checked against the shape before the tensor is allocated:
  // a short command must not cost the server the tensor's size.
  const bool blob = i < argc && iequals(arg(argv[i]), "BLOB");
  if (blob && argc - i != 2) {
    error = "ERR BLOB takes exactly one argument";
    return false;
  }
  if (blob && arg(argv[i + 1]).size() != bytes) {
    error = kBadLength;
    return false;
  }
  const int64_t given = argc - i - 1;  // VALUES
  if (!blob && i < argc && given != numel) {
    error = "ERR wrong number of values was given in AI.TENSORSET: expected " + std::to_string(numel) +
            ", got " + std::to_string(given);
    return false;
  }
  at::Tensor t = redis_tensor(dims, dt->type, bytes, /*zeroed=*/i == argc);
  if (!t.defined()) {
    error = kNoMemory;
    return false;
  }
  if (blob) {
    std::memcpy(t.data_ptr(), arg(argv[i + 1]).data(), bytes);
  } else if (i < argc) {
    for (int64_t k = 0; k < given; ++k) {
      if (!put_value(t, k, argv[i + 1 + k])) {
        error = "ERR invalid value for " + std::string(dt->name) + ": " + std::string(arg(argv[i + 1 + k]).substr(0, 40));
        return false;
      }
    }
  }
  out = std::move(t);
  return true;
}

void reply_tensor(RedisModuleCtx* ctx, const at::Tensor& t, bool keyvalue, bool meta, TensorFormat data) {
  // A stored tensor is contiguous and owns exactly its bytes; anything else
  // would send memory that is not the tensor's.
  if (!t.is_contiguous() || t.storage_offset() != 0 || t.nbytes() > t.storage().nbytes()) {
    rm::api.ReplyWithError(ctx, "ERR the stored tensor is not sound");
    return;
  }
  at::Tensor wide;
  const bool integral = t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble;
  if (data == TensorFormat::kValues && integral) wide = t.to(at::kLong);
  const long parts = (meta ? 2 : 0) + (data != TensorFormat::kNone ? 1 : 0);
  rm::api.ReplyWithArray(ctx, keyvalue ? 2 * parts : parts);
  if (meta) {
    if (keyvalue) rm::api.ReplyWithSimpleString(ctx, "dtype");
    rm::api.ReplyWithSimpleString(ctx, dtype_of(t.scalar_type())->name);
    if (keyvalue) rm::api.ReplyWithSimpleString(ctx, "shape");
    reply_shape(ctx, t);
  }
  if (data == TensorFormat::kBlob) {
    if (keyvalue) rm::api.ReplyWithSimpleString(ctx, "blob");
    rm::api.ReplyWithStringBuffer(ctx, static_cast<const char*>(t.data_ptr()), t.nbytes());
  } else if (data == TensorFormat::kValues) {
    if (keyvalue) rm::api.ReplyWithSimpleString(ctx, "values");
    reply_values(ctx, t, wide);
  }
}

bool storable(const at::Tensor& t, std::string& error) {
  if (!dtype_of(t.scalar_type())) {
    error = std::string("the model returned a ") + c10::toString(t.scalar_type()) + " tensor, which is not a RedisAI dtype";
    return false;
  }
  if (t.dim() < 1 || t.dim() > kMaxDims || t.numel() == 0 || t.nbytes() > kMaxTensorBytes) {
    error = "the model returned a tensor of shape " + c10::str(t.sizes()) +
            ": outputs need 1.." + std::to_string(kMaxDims) + " positive dims and at most " +
            std::to_string(kMaxTensorBytes) + " bytes";
    return false;
  }
  return true;
}

at::Tensor to_redis_memory(const at::Tensor& t) {
  const at::Tensor dense = t.detach().to(at::kCPU).contiguous();
  const std::size_t bytes = dense.nbytes();
  at::Tensor copy = redis_tensor(dense.sizes().vec(), dense.scalar_type(), bytes, false);
  if (!copy.defined()) throw std::bad_alloc();
  std::memcpy(copy.data_ptr(), dense.data_ptr(), bytes);
  return copy;
}

void set_tensor(RedisModuleKey* key, at::Tensor t) {
  rm::api.ModuleTypeSetValue(key, tensor_type, new Tensor{std::move(t)});
}

void replicate_tensor(RedisModuleCtx* ctx, const char* key, std::size_t key_len, const at::Tensor& t) {
  auto dims = dim_strings(t);
  rm::api.Replicate(ctx, "AI.TENSORSET", "bcvcb", key, key_len, dtype_of(t.scalar_type())->name,
                    dims.data(), dims.size(), "BLOB", static_cast<const char*>(t.data_ptr()), t.nbytes());
  for (auto* s : dims) rm::api.FreeString(nullptr, s);
}

bool register_tensor_type(RedisModuleCtx* ctx) {
  tensor_type = create_type(ctx, "FZAI_TENS", rdb_load, rdb_save, aof_rewrite, mem_usage, free_value);
  return tensor_type != nullptr;
}

}  // namespace fzai
