// AI.TENSORSET and AI.TENSORGET.
#include "commands.hpp"
#include "keys.hpp"
#include "tensor.hpp"

namespace fzai {

// AI.TENSORSET key TYPE d1 [d2 ...] [BLOB data | VALUES v ...]
int TensorSet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 4) return rm::api.WrongArity(ctx);
  at::Tensor t;
  std::string error;
  if (!parse_tensor(argv + 2, argc - 2, t, error)) return rm::api.ReplyWithError(ctx, error.c_str());
  RedisModuleKey* key = rm::api.OpenKey(ctx, argv[1], rm::READ | rm::WRITE);
  const int kind = rm::api.KeyType(key);
  if (kind != rm::KEYTYPE_EMPTY && (kind != rm::KEYTYPE_MODULE || rm::api.ModuleTypeGetType(key) != tensor_type)) {
    rm::api.CloseKey(key);
    return rm::api.ReplyWithError(ctx, kWrongType);
  }
  set_tensor(key, std::move(t));
  rm::api.CloseKey(key);
  rm::api.ReplicateVerbatim(ctx);
  return rm::api.ReplyWithSimpleString(ctx, "OK");
}

// AI.TENSORGET key [META] [BLOB | VALUES]
// 0.x: a lone BLOB, VALUES or META answers [type, shape(, data)].
// 1.x: META with a format, or no option at all, answers a key-value list.
int TensorGet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 2 || argc > 4) return rm::api.WrongArity(ctx);
  bool meta = false;
  TensorFormat format = TensorFormat::kNone;
  for (int i = 2; i < argc; ++i) {
    const auto word = arg(argv[i]);
    if (iequals(word, "META") && !meta) {
      meta = true;
    } else if (iequals(word, "BLOB") && format == TensorFormat::kNone) {
      format = TensorFormat::kBlob;
    } else if (iequals(word, "VALUES") && format == TensorFormat::kNone) {
      format = TensorFormat::kValues;
    } else {
      return rm::api.ReplyWithError(ctx, "ERR unsupported data format: use META, BLOB or VALUES");
    }
  }
  bool keyvalue = meta && format != TensorFormat::kNone;
  if (argc == 2) {  // 1.x default
    meta = keyvalue = true;
    format = TensorFormat::kBlob;
  } else if (!meta) {  // 0.x: the meta data always comes with the data
    meta = true;
  }
  RedisModuleKey* key = nullptr;
  auto* value = static_cast<Tensor*>(open_value(ctx, argv[1], tensor_type, rm::READ, "ERR tensor key is empty", &key));
  if (!value) return rm::OK;
  reply_tensor(ctx, value->value, keyvalue, meta, format);
  rm::api.CloseKey(key);
  return rm::OK;
}

}  // namespace fzai
