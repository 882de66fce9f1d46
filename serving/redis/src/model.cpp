#include "model.hpp"

#include <sstream>
#include <string_view>

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

std::string load_string(RedisModuleIO* io) {
  std::size_t len = 0;
  char* data = rm::api.LoadStringBuffer(io, &len);
  std::string s(data, len);
  rm::api.Free(data);
  return s;
}

void* rdb_load(RedisModuleIO* rdb, int encver) {
  if (encver != 0) return nullptr;
  ModelSettings s;
  s.backend = load_string(rdb);
  s.device = load_string(rdb);
  s.tag = load_string(rdb);
  s.batchsize = static_cast<long long>(rm::api.LoadUnsigned(rdb));
  s.minbatchsize = static_cast<long long>(rm::api.LoadUnsigned(rdb));
  s.minbatchtimeout = static_cast<long long>(rm::api.LoadUnsigned(rdb));
  for (auto* names : {&s.inputs, &s.outputs}) {
    const uint64_t n = rm::api.LoadUnsigned(rdb);
    for (uint64_t i = 0; i < n; ++i) names->push_back(load_string(rdb));
  }
  std::string error;
  auto model = load_model(std::move(s), load_string(rdb), error);
  if (!model) {
    rm::api.Log(nullptr, "warning", "fizbuz-ai: cannot load a model from the RDB: %s", error.c_str());
    return nullptr;
  }
  return new ModelRef{std::move(model)};
}

void rdb_save(RedisModuleIO* rdb, void* value) {
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

// AI.MODELSTORE key backend device TAG t BATCHSIZE n MINBATCHSIZE m MINBATCHTIMEOUT ms
//   [INPUTS n names...] [OUTPUTS n names...] BLOB data
void aof_rewrite(RedisModuleIO* aof, RedisModuleString* key, void* value) {
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

size_t mem_usage(const void* value) {
  return sizeof(Model) + static_cast<const ModelRef*>(value)->model->blob.size();
}

void free_value(void* value) { delete static_cast<ModelRef*>(value); }

}  // namespace

bool register_model_type(RedisModuleCtx* ctx) {
  RedisModuleTypeMethods methods{};
  methods.version = rm::TYPE_METHOD_VERSION;
  methods.rdb_load = rdb_load;
  methods.rdb_save = rdb_save;
  methods.aof_rewrite = aof_rewrite;
  methods.mem_usage = mem_usage;
  methods.free = free_value;
  model_type = rm::api.CreateDataType(ctx, "FZAI_MODL", 0, &methods);
  return model_type != nullptr;
}

}  // namespace fzai
