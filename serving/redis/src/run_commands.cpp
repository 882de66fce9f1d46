// AI.MODELRUN (0.x) and AI.MODELEXECUTE (1.x): check the keys on the main
// thread, block the client, run on a worker thread, then store the outputs,
// replicate them as AI.TENSORSET and answer OK.
#include <limits>

#include "commands.hpp"
#include "guard.hpp"
#include "keys.hpp"
#include "model.hpp"
#include "runner.hpp"
#include "tensor.hpp"

namespace fzai {
namespace {

struct RunArgs {
  std::vector<int> inputs, outputs;  // argv positions of the tensor keys
  long long timeout_ms = 0;          // 0: none
};

bool parse_timeout(RedisModuleString* s, RunArgs& a, std::string& error) {
  if (!arg_int(s, 1, std::numeric_limits<int32_t>::max(), a.timeout_ms)) {
    error = "ERR Invalid value for TIMEOUT";
    return false;
  }
  return true;
}

// AI.MODELRUN key [TIMEOUT t] INPUTS in... OUTPUTS out... [TIMEOUT t]
bool parse_run(RedisModuleString** argv, int argc, RunArgs& a, std::string& error) {
  int i = 2;
  if (i + 1 < argc && iequals(arg(argv[i]), "TIMEOUT")) {
    if (!parse_timeout(argv[i + 1], a, error)) return false;
    i += 2;
  }
  if (i >= argc || !iequals(arg(argv[i]), "INPUTS")) {
    error = "ERR INPUTS not specified";
    return false;
  }
  for (++i; i < argc && !iequals(arg(argv[i]), "OUTPUTS"); ++i) a.inputs.push_back(i);
  if (i >= argc) {
    error = "ERR OUTPUTS not specified";
    return false;
  }
  for (++i; i < argc; ++i) {
    if (iequals(arg(argv[i]), "TIMEOUT") && i + 2 == argc) {
      if (!parse_timeout(argv[i + 1], a, error)) return false;
      break;
    }
    a.outputs.push_back(i);
  }
  return true;
}

// AI.MODELEXECUTE key INPUTS n in... OUTPUTS m out... [TIMEOUT t]
bool parse_execute(RedisModuleString** argv, int argc, RunArgs& a, std::string& error) {
  int i = 2;
  for (const char* word : {"INPUTS", "OUTPUTS"}) {
    auto& list = word[0] == 'I' ? a.inputs : a.outputs;
    long long n = 0;
    if (i >= argc || !iequals(arg(argv[i]), word)) {
      error = std::string("ERR ") + word + " not specified";
      return false;
    }
    if (i + 1 >= argc || !arg_int(argv[i + 1], 1, argc - i - 2, n)) {
      error = std::string("ERR Invalid argument for ") + (word[0] == 'I' ? "input_count" : "output_count");
      return false;
    }
    for (long long k = 0; k < n; ++k) list.push_back(i + 2 + static_cast<int>(k));
    i += 2 + static_cast<int>(n);
  }
  if (i < argc) {
    if (i + 2 != argc || !iequals(arg(argv[i]), "TIMEOUT")) {
      error = "ERR Invalid argument: " + std::string(arg(argv[i]).substr(0, 40));
      return false;
    }
    if (!parse_timeout(argv[i + 1], a, error)) return false;
  }
  return true;
}

int reply_done(RedisModuleCtx* ctx, RedisModuleString** /*argv*/, int /*argc*/) {
  auto* job = static_cast<Job*>(rm::api.GetBlockedClientPrivateData(ctx));
  if (!job->error.empty()) return rm::api.ReplyWithError(ctx, job->error.c_str());
  for (std::size_t i = 0; i < job->output_keys.size(); ++i) {
    const std::string& name = job->output_keys[i];
    RedisModuleString* key_name = rm::api.CreateString(ctx, name.data(), name.size());
    RedisModuleKey* key = rm::api.OpenKey(ctx, key_name, rm::READ | rm::WRITE);
    const int kind = rm::api.KeyType(key);
    // The key may have been given another type while the run was queued.
    if (kind != rm::KEYTYPE_EMPTY && (kind != rm::KEYTYPE_MODULE || rm::api.ModuleTypeGetType(key) != tensor_type)) {
      rm::api.CloseKey(key);
      rm::api.FreeString(ctx, key_name);
      return rm::api.ReplyWithError(ctx, kWrongType);
    }
    set_tensor(key, job->outputs[i]);
    rm::api.CloseKey(key);
    rm::api.FreeString(ctx, key_name);
    // Replicas and the AOF get the outputs, not the run.
    replicate_tensor(ctx, name.data(), name.size(), job->outputs[i]);
  }
  return rm::api.ReplyWithSimpleString(ctx, "OK");
}

void free_job(RedisModuleCtx* /*ctx*/, void* privdata) { delete static_cast<Job*>(privdata); }

int run(RedisModuleCtx* ctx, RedisModuleString** argv, int argc, bool execute) {
  RunArgs a;
  std::string error;
  const bool parsed = argc >= 2 && (execute ? parse_execute(argv, argc, a, error) : parse_run(argv, argc, a, error));
  if (rm::api.IsKeysPositionRequest(ctx)) {
    // Redis asks where the keys are (Cluster slots, ACLs): model, inputs, outputs.
    if (argc >= 2) rm::api.KeyAtPos(ctx, 1);
    if (parsed) {
      for (int p : a.inputs) rm::api.KeyAtPos(ctx, p);
      for (int p : a.outputs) rm::api.KeyAtPos(ctx, p);
    }
    return rm::OK;
  }
  if (argc < 4) return rm::api.WrongArity(ctx);
  if (!parsed) return rm::api.ReplyWithError(ctx, error.c_str());
  if (a.inputs.empty() || a.outputs.empty()) return rm::api.ReplyWithError(ctx, "ERR a run needs at least one input and one output");
  if (rm::api.GetContextFlags(ctx) & (rm::CTX_FLAGS_MULTI | rm::CTX_FLAGS_LUA)) {
    return rm::api.ReplyWithError(ctx, "ERR model runs block the client: not allowed in MULTI or scripts");
  }

  auto job = std::make_unique<Job>();
  RedisModuleKey* key = nullptr;
  auto* ref = static_cast<ModelRef*>(open_value(ctx, argv[1], model_type, rm::READ, "ERR model key is empty", &key));
  if (!ref) return rm::OK;
  job->model = ref->model;
  rm::api.CloseKey(key);
  for (int p : a.inputs) {
    auto* t = static_cast<Tensor*>(open_value(ctx, argv[p], tensor_type, rm::READ, "ERR tensor key is empty", &key));
    if (!t) return rm::OK;
    // Shared until the run: the run thread copies it before the model sees it.
    job->inputs.push_back(t->value);
    rm::api.CloseKey(key);
  }
  for (int p : a.outputs) {
    key = rm::api.OpenKey(ctx, argv[p], rm::READ);
    const int kind = rm::api.KeyType(key);
    const bool wrong = kind != rm::KEYTYPE_EMPTY && (kind != rm::KEYTYPE_MODULE || rm::api.ModuleTypeGetType(key) != tensor_type);
    rm::api.CloseKey(key);
    if (wrong) return rm::api.ReplyWithError(ctx, kWrongType);
    job->output_keys.emplace_back(arg(argv[p]));
  }
  if (a.timeout_ms > 0) {
    job->has_deadline = true;
    job->deadline = Clock::now() + std::chrono::milliseconds(a.timeout_ms);
  }
  // No Redis-side timeout: the runner keeps TIMEOUT (see runner.cpp's timekeeper).
  job->client = rm::api.BlockClient(ctx, guarded<reply_done>, nullptr, free_job, 0);
  submit(job.release());
  return rm::OK;
}

}  // namespace

int ModelRun(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) { return run(ctx, argv, argc, false); }
int ModelExecute(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) { return run(ctx, argv, argc, true); }

}  // namespace fzai
