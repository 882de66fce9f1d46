// Small helpers shared by the commands: argument text, keyword matching and
// key lookups with RedisAI's error replies.
#pragma once

#include <string>
#include <string_view>

#include "module_api.h"

namespace fzai {

inline std::string_view arg(RedisModuleString* s) {
  std::size_t len = 0;
  const char* p = rm::api.StringPtrLen(s, &len);
  return {p, len};
}

bool iequals(std::string_view a, std::string_view b);

// A whole-number argument in [low, high]; false if it is not one.
bool arg_int(RedisModuleString* s, long long low, long long high, long long& out);

constexpr const char* kWrongType = "WRONGTYPE Operation against a key holding the wrong kind of value";

// Open `name` and return the module value of `type` in it. On an empty key or
// a key of another type, replies the error, closes the key and returns nullptr.
// `empty_error` is the reply for a missing key.
void* open_value(RedisModuleCtx* ctx, RedisModuleString* name, RedisModuleType* type, int mode,
                 const char* empty_error, RedisModuleKey** key_out);

}  // namespace fzai
