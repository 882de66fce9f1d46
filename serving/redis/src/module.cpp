// Entry point: Redis calls RedisModule_OnLoad when it loads the .so
// (redis-server --loadmodule fizbuz_ai.so [THREADS n]).
#include <ATen/Parallel.h>

#include "commands.hpp"
#include "guard.hpp"
#include "keys.hpp"
#include "model.hpp"
#include "runner.hpp"
#include "tensor.hpp"

namespace {

struct CommandSpec {
  const char* name;
  RedisModuleCmdFunc handler;
  const char* flags;
  int first_key, last_key, step;
};

// Every handler is guarded: an exception becomes an error reply (guard.hpp).
const CommandSpec kCommands[] = {
    {"AI.TENSORSET", fzai::guarded<fzai::TensorSet>, "write deny-oom", 1, 1, 1},
    {"AI.TENSORGET", fzai::guarded<fzai::TensorGet>, "readonly", 1, 1, 1},
    {"AI.MODELSET", fzai::guarded<fzai::ModelSet>, "write deny-oom", 1, 1, 1},
    {"AI.MODELSTORE", fzai::guarded<fzai::ModelStore>, "write deny-oom", 1, 1, 1},
    {"AI.MODELGET", fzai::guarded<fzai::ModelGet>, "readonly", 1, 1, 1},
    {"AI.MODELDEL", fzai::guarded<fzai::ModelDel>, "write", 1, 1, 1},
    // Inputs and outputs sit at positions only the parser knows: getkeys-api.
    {"AI.MODELRUN", fzai::guarded<fzai::ModelRun>, "write deny-oom getkeys-api", 1, 1, 1},
    {"AI.MODELEXECUTE", fzai::guarded<fzai::ModelExecute>, "write deny-oom getkeys-api", 1, 1, 1},
    {"AI.INFO", fzai::guarded<fzai::Info>, "readonly", 1, 1, 1},
    {"AI.CONFIG", fzai::guarded<fzai::Config>, "admin", 0, 0, 0},
};

}  // namespace

extern "C" __attribute__((visibility("default"))) int RedisModule_OnLoad(RedisModuleCtx* ctx, RedisModuleString** argv,
                                                                         int argc) {
  if (rm::init(ctx, "ai", 10000) != rm::OK) return rm::ERR;
  long long threads = 1;
  for (int i = 0; i + 1 < argc; i += 2) {
    if (fzai::iequals(fzai::arg(argv[i]), "THREADS") && fzai::arg_int(argv[i + 1], 1, 64, threads)) continue;
    rm::api.Log(ctx, "warning", "unknown or invalid module argument; the only one is THREADS n (1..64)");
    return rm::ERR;
  }
  // A short or bad RDB/RESTORE payload is the type's rdb_load's to refuse
  // (it answers NULL), not a reason for Redis to stop the server.
  rm::api.SetModuleOptions(ctx, rm::OPTIONS_HANDLE_IO_ERRORS);
  // One intra-op thread: small models gain nothing from more, and the host is shared.
  at::set_num_threads(1);
  if (!fzai::register_tensor_type(ctx) || !fzai::register_model_type(ctx)) return rm::ERR;
  for (const auto& c : kCommands) {
    if (rm::api.CreateCommand(ctx, c.name, c.handler, c.flags, c.first_key, c.last_key, c.step) != rm::OK) return rm::ERR;
  }
  fzai::start_workers(static_cast<int>(threads));
  rm::api.Log(ctx, "notice", "fizbuz RedisAI-compatible subset loaded (TORCH on CPU, %lld run thread(s))", threads);
  return rm::OK;
}
