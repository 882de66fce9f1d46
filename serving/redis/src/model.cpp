#include "model.hpp"

#include <limits>
#include <sstream>
#include <string_view>

#include "guard.hpp"
#include "keys.hpp"

namespace fzai {

RedisModuleType* model_type = nullptr;

std::string torch_error_line(const char* what) {
  std::string_view text(what);
  // The TorchScript interpreter puts its traceback first and the cause last.
  if (text.find("Traceback of TorchScript") != std::string_view::npos) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    const auto last = text.rfind('\n');
    return std::string(last == std::string_view::npos ? text : text.substr(last + 1));
  }
  return std::string(text.substr(0, text.find('\n')));
}

std::shared_ptr<Model> load_model(ModelSettings settings, std::string blob, std::string& error) {
  auto model = std::make_shared<Model>();
  try {
    std::istringstream stream(blob);
    model->module = torch::jit::load(stream, torch::kCPU);
    model->module.eval();
    if (!model->module.find_method("forward")) {
      error = "ERR the TorchScript module has no forward method";
      return nullptr;
    }
  } catch (const c10::Error& e) {
    error = "ERR model blob is not a TorchScript model: " + torch_error_line(e.what_without_backtrace());
    return nullptr;
  } catch (const std::exception& e) {
    error = "ERR model blob is not a TorchScript model: " + torch_error_line(e.what());
    return nullptr;
  }
  model->settings = std::move(settings);
  model->blob = std::move(blob);
  return model;
}

namespace {

void save_string(RedisModuleIO* io, const std::string& s) { rm::api.SaveStringBuffer(io, s.data(), s.size()); }

// Names in a model's settings: more than this in an RDB or RESTORE payload is bad data.
constexpr uint64_t kMaxNames = 1024;

// false on a short read (HANDLE_IO_ERRORS: Redis flags it and returns NULL).
bool load_string(RedisModuleIO* io, std::string& out) {
  std::size_t len = 0;
  char* data = rm::api.LoadStringBuffer(io, &len);
  if (rm::api.IsIOError(io) || data == nullptr) {
    if (data) rm::api.Free(data);
    return false;
  }
  out.assign(data, len);
  rm::api.Free(data);
  return true;
}

bool load_setting(RedisModuleIO* io, long long& out) {
  const uint64_t v = rm::api.LoadUnsigned(io);
  if (rm::api.IsIOError(io) || v > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) return false;
  out = static_cast<long long>(v);
  return true;
}

// Every field is checked as it is read, as for the tensor type: a bad or
// short payload answers NULL (Redis reports bad data), never an exception.
void* load_model_value(RedisModuleIO* rdb, int encver) {
  if (encver != 0) return nullptr;
  ModelSettings s;
  std::string blob;
  if (!load_string(rdb, s.backend) || !load_string(rdb, s.device) || !load_string(rdb, s.tag)) return nullptr;
  if (!load_setting(rdb, s.batchsize) || !load_setting(rdb, s.minbatchsize) || !load_setting(rdb, s.minbatchtimeout)) {
    return nullptr;
  }
  if (s.minbatchsize > s.batchsize || s.backend != "TORCH" || s.device != "CPU") return nullptr;
  for (auto* names : {&s.inputs, &s.outputs}) {
    const uint64_t n = rm::api.LoadUnsigned(rdb);
    if (rm::api.IsIOError(rdb) || n > kMaxNames) return nullptr;
    for (uint64_t i = 0; i < n; ++i) {
      if (!load_string(rdb, names->emplace_back())) return nullptr;
    }
  }
  if (!load_string(rdb, blob)) return nullptr;
  std::string error;
  auto model = load_model(std::move(s), std::move(blob), error);
  if (!model) {
    rm::api.Log(nullptr, "warning", "fizbuz-ai: cannot load a model from the RDB: %s", error.c_str());
    return nullptr;
  }
  return new ModelRef{std::move(model)};
}

void* rdb_load(RedisModuleIO* rdb, int encver) {
  void* value = or_on_exception<void*>(nullptr, "loading a model", [&] { return load_model_value(rdb, encver); });
  if (!value) rm::api.Log(nullptr, "warning", "fizbuz-ai: refused a model from an RDB or RESTORE payload: bad or short data");
  return value;
}

void save_model(RedisModuleIO* rdb, void* value) {
  const Model& m = *static_cast<ModelRef*>(value)->model;
  const ModelSettings& s = m.settings;
  save_string(rdb, s.backend);
  save_string(rdb, s.device);
  save_string(rdb, s.tag);
  rm::api.SaveUnsigned(rdb, static_cast<uint64_t>(s.batchsize));
  rm::api.SaveUnsigned(rdb, static_cast<uint64_t>(s.minbatchsize));
  rm::api.SaveUnsigned(rdb, static_cast<uint64_t>(s.minbatchtimeout));
  for (const auto* names : {&s.inputs, &s.outputs}) {
    rm::api.SaveUnsigned(rdb, names->size());
    for (const auto& name : *names) save_string(rdb, name);
  }
  save_string(rdb, m.blob);
}

void rdb_save(RedisModuleIO* rdb, void* value) {
  or_on_exception(0, "saving a model", [&] { save_model(rdb, value); return 0; });
}

// AI.MODELSTORE key backend device TAG t BATCHSIZE n MINBATCHSIZE m MINBATCHTIMEOUT ms
//   [INPUTS n names...] [OUTPUTS n names...] BLOB data
void emit_model(RedisModuleIO* aof, RedisModuleString* key, void* value) {
  const Model& m = *static_cast<ModelRef*>(value)->model;
  const ModelSettings& s = m.settings;
  std::vector<std::string> words = {s.backend, s.device, "TAG", s.tag,
                                    "BATCHSIZE", std::to_string(s.batchsize),
                                    "MINBATCHSIZE", std::to_string(s.minbatchsize),
                                    "MINBATCHTIMEOUT", std::to_string(s.minbatchtimeout)};
  for (const auto& [word, names] : {std::pair{"INPUTS", &s.inputs}, std::pair{"OUTPUTS", &s.outputs}}) {
    if (names->empty()) continue;
    words.push_back(word);
    words.push_back(std::to_string(names->size()));
    words.insert(words.end(), names->begin(), names->end());
  }
  std::vector<RedisModuleString*> args;
  for (const auto& w : words) args.push_back(rm::api.CreateString(nullptr, w.data(), w.size()));
  rm::api.EmitAOF(aof, "AI.MODELSTORE", "svcb", key, args.data(), args.size(), "BLOB", m.blob.data(),
                  m.blob.size());
  for (auto* s2 : args) rm::api.FreeString(nullptr, s2);
}

void aof_rewrite(RedisModuleIO* aof, RedisModuleString* key, void* value) {
  or_on_exception(0, "rewriting a model to the AOF", [&] { emit_model(aof, key, value); return 0; });
}

size_t mem_usage(const void* value) {
  return sizeof(Model) + static_cast<const ModelRef*>(value)->model->blob.size();
}

void free_value(void* value) { delete static_cast<ModelRef*>(value); }

}  // namespace

bool register_model_type(RedisModuleCtx* ctx) {
  model_type = create_type(ctx, "FZAI_MODL", rdb_load, rdb_save, aof_rewrite, mem_usage, free_value);
  return model_type != nullptr;
}

}  // namespace fzai
