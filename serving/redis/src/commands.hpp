// The AI.* command handlers, registered by module.cpp.
#pragma once

#include "module_api.h"

namespace fzai {

int TensorSet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
int TensorGet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
int ModelSet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);    // 0.x, blob with or without BLOB
int ModelStore(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);  // 1.x
int ModelGet(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
int ModelDel(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
int ModelRun(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);      // 0.x
int ModelExecute(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);  // 1.x
int Info(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
int Config(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);

extern long long model_chunk_size;

}  // namespace fzai
