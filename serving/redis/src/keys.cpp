#include "keys.hpp"

#include <cerrno>
#include <cstdlib>

namespace fzai {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

bool arg_int(RedisModuleString* s, long long low, long long high, long long& out) {
  long long value = 0;
  if (rm::api.StringToLongLong(s, &value) != rm::OK) return false;
  if (value < low || value > high) return false;
  out = value;
  return true;
}

void* open_value(RedisModuleCtx* ctx, RedisModuleString* name, RedisModuleType* type, int mode,
                 const char* empty_error, RedisModuleKey** key_out) {
  RedisModuleKey* key = rm::api.OpenKey(ctx, name, mode);
  const int kind = rm::api.KeyType(key);
  if (kind == rm::KEYTYPE_EMPTY) {
    rm::api.CloseKey(key);
    rm::api.ReplyWithError(ctx, empty_error);
    return nullptr;
  }
  if (kind != rm::KEYTYPE_MODULE || rm::api.ModuleTypeGetType(key) != type) {
    rm::api.CloseKey(key);
    rm::api.ReplyWithError(ctx, kWrongType);
    return nullptr;
  }
  *key_out = key;
  return rm::api.ModuleTypeGetValue(key);
}

}  // namespace fzai
