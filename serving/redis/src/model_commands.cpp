// AI.MODELSET, AI.MODELSTORE, AI.MODELGET, AI.MODELDEL, AI.INFO, AI.CONFIG.
#include <limits>

#include "commands.hpp"
#include "keys.hpp"
#include "model.hpp"

namespace fzai {

// RedisAI's default: 511 MiB, under Redis's 512 MiB bulk-string limit.
long long model_chunk_size = 511ll << 20;

namespace {

constexpr long long kMaxSetting = std::numeric_limits<int32_t>::max();

bool is_option(std::string_view w) {
  for (const char* o : {"TAG", "BATCHSIZE", "MINBATCHSIZE", "MINBATCHTIMEOUT", "INPUTS", "OUTPUTS", "BLOB"}) {
    if (iequals(w, o)) return true;
  }
  return false;
}

// Parse "backend device [options] BLOB chunk..." (from argv[2]). `counted`: 1.x
// AI.MODELSTORE gives INPUTS/OUTPUTS a count; AI.MODELSET lists names up to the
// next option, and (0.x) may give the blob as its last argument without BLOB.
bool parse_model_args(RedisModuleString** argv, int argc, bool counted, ModelSettings& s, std::string& blob,
                      std::string& error) {
  if (!iequals(arg(argv[2]), "TORCH")) {
    error = iequals(arg(argv[2]), "TF") || iequals(arg(argv[2]), "TFLITE") || iequals(arg(argv[2]), "ONNX")
                ? "ERR unsupported backend: this module runs TORCH models only"
                : "ERR unsupported backend";
    return false;
  }
  const auto device = arg(argv[3]);
  if (!(iequals(device, "CPU") || (device.size() > 4 && iequals(device.substr(0, 4), "CPU:")))) {
    error = "ERR unsupported device: this module runs models on CPU only";
    return false;
  }
  s.device = "CPU";
  bool has_blob_word = false;
  for (int i = 4; i < argc; ++i) has_blob_word = has_blob_word || iequals(arg(argv[i]), "BLOB");
  // Without BLOB (0.x), the last argument is the blob.
  const int options_end = has_blob_word || counted ? argc : argc - 1;
  bool have_blob = false;
  int i = 4;
  while (i < options_end) {
    const auto word = arg(argv[i]);
    if (iequals(word, "BLOB")) {
      if (i + 1 >= argc) break;
      for (int k = i + 1; k < argc; ++k) blob.append(arg(argv[k]));
      have_blob = true;
      i = argc;
      break;
    }
    const bool takes_value = iequals(word, "TAG") || iequals(word, "BATCHSIZE") || iequals(word, "MINBATCHSIZE") ||
                             iequals(word, "MINBATCHTIMEOUT");
    if (takes_value) {
      if (i + 1 >= options_end) {
        error = "ERR missing value for " + std::string(word);
        return false;
      }
      long long* number = iequals(word, "BATCHSIZE")      ? &s.batchsize
                          : iequals(word, "MINBATCHSIZE")  ? &s.minbatchsize
                          : iequals(word, "MINBATCHTIMEOUT") ? &s.minbatchtimeout
                                                              : nullptr;
      if (!number) {
        s.tag = std::string(arg(argv[i + 1]));
      } else if (!arg_int(argv[i + 1], 0, kMaxSetting, *number)) {
        error = "ERR Invalid argument for " + std::string(word);
        return false;
      }
      i += 2;
    } else if (iequals(word, "INPUTS") || iequals(word, "OUTPUTS")) {
      auto& names = iequals(word, "INPUTS") ? s.inputs : s.outputs;
      ++i;
      if (counted) {
        long long n = 0;
        if (i >= options_end || !arg_int(argv[i], 0, options_end - i - 1, n)) {
          error = "ERR Invalid argument for " + std::string(word) + " count";
          return false;
        }
        for (long long k = 0; k < n; ++k) names.emplace_back(arg(argv[i + 1 + k]));
        i += 1 + static_cast<int>(n);
      } else {
        while (i < options_end && !is_option(arg(argv[i]))) names.emplace_back(arg(argv[i++]));
      }
    } else {
      error = "ERR Invalid argument: " + std::string(word.substr(0, 40));
      return false;
    }
  }
  if (!have_blob && !has_blob_word && !counted && argc > 4) {
    blob = std::string(arg(argv[argc - 1]));
    have_blob = true;
  }
  if (!have_blob) {
    error = "ERR Insufficient arguments, missing model BLOB";
    return false;
  }
  if (s.minbatchsize > 0 && s.batchsize == 0) {
    error = "ERR MINBATCHSIZE specified without BATCHSIZE";
    return false;
  }
  if (s.minbatchtimeout > 0 && s.minbatchsize == 0) {
    error = "ERR MINBATCHTIMEOUT specified without MINBATCHSIZE";
    return false;
  }
  if (s.minbatchsize > s.batchsize) {
    error = "ERR MINBATCHSIZE is larger than BATCHSIZE";
    return false;
  }
  return true;
}

int store(RedisModuleCtx* ctx, RedisModuleString** argv, int argc, bool counted) {
  if (argc < 5) return rm::api.WrongArity(ctx);
  ModelSettings settings;
  std::string blob, error;
  if (!parse_model_args(argv, argc, counted, settings, blob, error)) return rm::api.ReplyWithError(ctx, error.c_str());
  RedisModuleKey* key = rm::api.OpenKey(ctx, argv[1], rm::READ | rm::WRITE);
  const int kind = rm::api.KeyType(key);
  const bool wrong = kind != rm::KEYTYPE_EMPTY && (kind != rm::KEYTYPE_MODULE || rm::api.ModuleTypeGetType(key) != model_type);
  rm::api.CloseKey(key);
  if (wrong) return rm::api.ReplyWithError(ctx, kWrongType);
  // Loading happens on the main thread, as in RedisAI: models are set rarely.
  auto model = load_model(std::move(settings), std::move(blob), error);
  if (!model) return rm::api.ReplyWithError(ctx, error.c_str());
  key = rm::api.OpenKey(ctx, argv[1], rm::READ | rm::WRITE);
  rm::api.ModuleTypeSetValue(key, model_type, new ModelRef{std::move(model)});
  rm::api.CloseKey(key);
  rm::api.ReplicateVerbatim(ctx);
  return rm::api.ReplyWithSimpleString(ctx, "OK");
}

void reply_names(RedisModuleCtx* ctx, const std::vector<std::string>& names) {
  rm::api.ReplyWithArray(ctx, static_cast<long>(names.size()));
  for (const auto& n : names) rm::api.ReplyWithStringBuffer(ctx, n.data(), n.size());
}

void reply_pair(RedisModuleCtx* ctx, const char* name, long long value) {
  rm::api.ReplyWithSimpleString(ctx, name);
  rm::api.ReplyWithLongLong(ctx, value);
}

}  // namespace

int ModelSet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) { return store(ctx, argv, argc, false); }
int ModelStore(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) { return store(ctx, argv, argc, true); }

// AI.MODELGET key [META] [BLOB]: a key-value list (no option means both).
int ModelGet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 2 || argc > 4) return rm::api.WrongArity(ctx);
  bool meta = argc == 2, blob = argc == 2;
  for (int i = 2; i < argc; ++i) {
    if (iequals(arg(argv[i]), "META")) {
      meta = true;
    } else if (iequals(arg(argv[i]), "BLOB")) {
      blob = true;
    } else {
      return rm::api.ReplyWithError(ctx, "ERR unsupported option: use META and/or BLOB");
    }
  }
  RedisModuleKey* key = nullptr;
  auto* ref = static_cast<ModelRef*>(open_value(ctx, argv[1], model_type, rm::READ, "ERR model key is empty", &key));
  if (!ref) return rm::OK;
  const Model& m = *ref->model;
  rm::api.ReplyWithArray(ctx, (meta ? 16 : 0) + (blob ? 2 : 0));
  if (meta) {
    const ModelSettings& s = m.settings;
    rm::api.ReplyWithSimpleString(ctx, "backend");
    rm::api.ReplyWithSimpleString(ctx, s.backend.c_str());
    rm::api.ReplyWithSimpleString(ctx, "device");
    rm::api.ReplyWithSimpleString(ctx, s.device.c_str());
    rm::api.ReplyWithSimpleString(ctx, "tag");
    rm::api.ReplyWithStringBuffer(ctx, s.tag.data(), s.tag.size());
    reply_pair(ctx, "batchsize", s.batchsize);
    reply_pair(ctx, "minbatchsize", s.minbatchsize);
    rm::api.ReplyWithSimpleString(ctx, "inputs");
    reply_names(ctx, s.inputs);
    rm::api.ReplyWithSimpleString(ctx, "outputs");
    reply_names(ctx, s.outputs);
    reply_pair(ctx, "minbatchtimeout", s.minbatchtimeout);
  }
  if (blob) {
    rm::api.ReplyWithSimpleString(ctx, "blob");
    rm::api.ReplyWithStringBuffer(ctx, m.blob.data(), m.blob.size());
  }
  rm::api.CloseKey(key);
  return rm::OK;
}

int ModelDel(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc != 2) return rm::api.WrongArity(ctx);
  RedisModuleKey* key = nullptr;
  if (!open_value(ctx, argv[1], model_type, rm::READ | rm::WRITE, "ERR model key is empty", &key)) return rm::OK;
  rm::api.DeleteKey(key);
  rm::api.CloseKey(key);
  rm::api.ReplicateVerbatim(ctx);
  return rm::api.ReplyWithSimpleString(ctx, "OK");
}

// AI.INFO key [RESETSTAT]: run statistics. "forwards" is this module's own
// counter: calls / forwards above 1 shows runs joined by BATCHSIZE.
int Info(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 2 || argc > 3) return rm::api.WrongArity(ctx);
  const bool reset = argc == 3;
  if (reset && !iequals(arg(argv[2]), "RESETSTAT")) return rm::api.ReplyWithError(ctx, "ERR unsupported option: RESETSTAT");
  RedisModuleKey* key = nullptr;
  auto* ref = static_cast<ModelRef*>(open_value(ctx, argv[1], model_type, rm::READ, "ERR model key is empty", &key));
  if (!ref) return rm::OK;
  ModelStats& st = ref->model->stats;
  if (reset) {
    st.calls = st.samples = st.errors = st.forwards = st.duration_us = 0;
    rm::api.CloseKey(key);
    return rm::api.ReplyWithSimpleString(ctx, "OK");
  }
  const auto name = arg(argv[1]);
  const ModelSettings& s = ref->model->settings;
  rm::api.ReplyWithArray(ctx, 20);
  rm::api.ReplyWithSimpleString(ctx, "key");
  rm::api.ReplyWithStringBuffer(ctx, name.data(), name.size());
  rm::api.ReplyWithSimpleString(ctx, "type");
  rm::api.ReplyWithSimpleString(ctx, "MODEL");
  rm::api.ReplyWithSimpleString(ctx, "backend");
  rm::api.ReplyWithSimpleString(ctx, s.backend.c_str());
  rm::api.ReplyWithSimpleString(ctx, "device");
  rm::api.ReplyWithSimpleString(ctx, s.device.c_str());
  rm::api.ReplyWithSimpleString(ctx, "tag");
  rm::api.ReplyWithStringBuffer(ctx, s.tag.data(), s.tag.size());
  reply_pair(ctx, "duration", static_cast<long long>(st.duration_us.load()));
  reply_pair(ctx, "samples", static_cast<long long>(st.samples.load()));
  reply_pair(ctx, "calls", static_cast<long long>(st.calls.load()));
  reply_pair(ctx, "errors", static_cast<long long>(st.errors.load()));
  reply_pair(ctx, "forwards", static_cast<long long>(st.forwards.load()));
  rm::api.CloseKey(key);
  return rm::OK;
}

// AI.CONFIG GET MODEL_CHUNK_SIZE | MODEL_CHUNK_SIZE n | BACKENDSPATH p | LOADBACKEND TORCH p
int Config(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 3) return rm::api.WrongArity(ctx);
  const auto what = arg(argv[1]);
  if (iequals(what, "GET")) {
    if (argc != 3) return rm::api.WrongArity(ctx);
    if (iequals(arg(argv[2]), "MODEL_CHUNK_SIZE")) return rm::api.ReplyWithLongLong(ctx, model_chunk_size);
    return rm::api.ReplyWithError(ctx, "ERR unsupported AI.CONFIG GET option: MODEL_CHUNK_SIZE only");
  }
  if (iequals(what, "MODEL_CHUNK_SIZE") && argc == 3) {
    long long n = 0;
    if (!arg_int(argv[2], 1, 511ll << 20, n)) return rm::api.ReplyWithError(ctx, "ERR MODEL_CHUNK_SIZE: give a size in bytes");
    model_chunk_size = n;
    return rm::api.ReplyWithSimpleString(ctx, "OK");
  }
  if (iequals(what, "BACKENDSPATH") && argc == 3) return rm::api.ReplyWithSimpleString(ctx, "OK");
  if (iequals(what, "LOADBACKEND") && argc == 4) {
    if (iequals(arg(argv[2]), "TORCH")) return rm::api.ReplyWithSimpleString(ctx, "OK");  // built in
    return rm::api.ReplyWithError(ctx, "ERR unsupported backend: this module runs TORCH models only");
  }
  return rm::api.ReplyWithError(ctx, "ERR unsupported AI.CONFIG option");
}

}  // namespace fzai
