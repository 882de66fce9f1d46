// Models: a TorchScript module loaded from its serialized bytes, its
// settings (batching, tag, names) and run counters, and the "model" data type.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>

#include "module_api.h"

namespace fzai {

struct ModelSettings {
  std::string backend = "TORCH";
  std::string device = "CPU";
  std::string tag;
  long long batchsize = 0;        // 0: never join runs
  long long minbatchsize = 0;     // wait for this many rows before running
  long long minbatchtimeout = 0;  // ms to wait for minbatchsize (0: wait as long as it takes)
  std::vector<std::string> inputs, outputs;  // names, kept for AI.MODELGET only
};

struct ModelStats {
  std::atomic<uint64_t> calls{0};     // runs answered (each client's run counts once)
  std::atomic<uint64_t> samples{0};   // rows of dimension 0 through the model
  std::atomic<uint64_t> errors{0};    // runs answered with an error
  std::atomic<uint64_t> forwards{0};  // forward passes: calls / forwards > 1 means runs were joined
  std::atomic<uint64_t> duration_us{0};
};

struct Model {
  ModelSettings settings;
  std::string blob;  // the TorchScript file as stored, for AI.MODELGET, RDB and AOF
  torch::jit::Module module;
  ModelStats stats;
};

// A key's value: runs in flight share the model, so AI.MODELDEL or a
// replacement never frees a module a worker thread is using.
struct ModelRef {
  std::shared_ptr<Model> model;
};

extern RedisModuleType* model_type;

// Load TorchScript bytes; on failure returns nullptr with `error` set to a reply text.
std::shared_ptr<Model> load_model(ModelSettings settings, std::string blob, std::string& error);

// The message of a LibTorch exception in one line (the cause, not the traceback).
std::string torch_error_line(const char* what);

bool register_model_type(RedisModuleCtx* ctx);

}  // namespace fzai
