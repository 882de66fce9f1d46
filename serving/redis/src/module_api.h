// A minimal, hand-written binding to the Redis module ABI (API version 1),
// written from Redis's public module documentation. Only what this module
// uses is declared. Every function is looked up by name at load time through
// the GetApi pointer that Redis stores as the first field of the context.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

struct RedisModuleCtx;
struct RedisModuleKey;
struct RedisModuleString;
struct RedisModuleIO;
struct RedisModuleType;
struct RedisModuleDigest;
struct RedisModuleBlockedClient;

using RedisModuleCmdFunc = int (*)(RedisModuleCtx*, RedisModuleString**, int);

// Callbacks of a module data type (the first fields of the type-methods struct,
// enough for method-table version 1).
struct RedisModuleTypeMethods {
  uint64_t version;
  void* (*rdb_load)(RedisModuleIO* rdb, int encver);
  void (*rdb_save)(RedisModuleIO* rdb, void* value);
  void (*aof_rewrite)(RedisModuleIO* aof, RedisModuleString* key, void* value);
  size_t (*mem_usage)(const void* value);
  void (*digest)(RedisModuleDigest* digest, void* value);
  void (*free)(void* value);
};

}  // extern "C"

namespace rm {

constexpr int OK = 0;
constexpr int ERR = 1;
constexpr int APIVER_1 = 1;
constexpr uint64_t TYPE_METHOD_VERSION = 1;

constexpr int READ = 1 << 0;
constexpr int WRITE = 1 << 1;

constexpr int KEYTYPE_EMPTY = 0;
constexpr int KEYTYPE_MODULE = 6;

constexpr int CTX_FLAGS_LUA = 1 << 0;
constexpr int CTX_FLAGS_MULTI = 1 << 1;

constexpr long POSTPONED_ARRAY_LEN = -1;

// SetModuleOptions flag: loads from an RDB or a RESTORE payload that run short
// set an error flag (read with IsIOError) and return 0/NULL, instead of Redis
// stopping the server; the type's rdb_load must then return NULL.
constexpr int OPTIONS_HANDLE_IO_ERRORS = 1 << 0;

// The API table, filled by init(). One pointer per function, named as in Redis.
struct Api {
  int (*GetApi)(const char*, void*);
  void (*SetModuleAttribs)(RedisModuleCtx*, const char*, int, int);
  void (*SetModuleOptions)(RedisModuleCtx*, int);
  int (*IsModuleNameBusy)(const char*);
  int (*CreateCommand)(RedisModuleCtx*, const char*, RedisModuleCmdFunc, const char*, int, int, int);
  RedisModuleType* (*CreateDataType)(RedisModuleCtx*, const char*, int, RedisModuleTypeMethods*);

  int (*WrongArity)(RedisModuleCtx*);
  int (*ReplyWithError)(RedisModuleCtx*, const char*);
  int (*ReplyWithSimpleString)(RedisModuleCtx*, const char*);
  int (*ReplyWithLongLong)(RedisModuleCtx*, long long);
  int (*ReplyWithDouble)(RedisModuleCtx*, double);
  int (*ReplyWithArray)(RedisModuleCtx*, long);
  void (*ReplySetArrayLength)(RedisModuleCtx*, long);
  int (*ReplyWithStringBuffer)(RedisModuleCtx*, const char*, size_t);

  const char* (*StringPtrLen)(const RedisModuleString*, size_t*);
  int (*StringToLongLong)(const RedisModuleString*, long long*);
  int (*StringToDouble)(const RedisModuleString*, double*);
  RedisModuleString* (*CreateString)(RedisModuleCtx*, const char*, size_t);
  void (*FreeString)(RedisModuleCtx*, RedisModuleString*);

  RedisModuleKey* (*OpenKey)(RedisModuleCtx*, RedisModuleString*, int);
  void (*CloseKey)(RedisModuleKey*);
  int (*KeyType)(RedisModuleKey*);
  int (*DeleteKey)(RedisModuleKey*);
  int (*ModuleTypeSetValue)(RedisModuleKey*, RedisModuleType*, void*);
  RedisModuleType* (*ModuleTypeGetType)(RedisModuleKey*);
  void* (*ModuleTypeGetValue)(RedisModuleKey*);

  int (*ReplicateVerbatim)(RedisModuleCtx*);
  int (*Replicate)(RedisModuleCtx*, const char*, const char*, ...);
  void (*EmitAOF)(RedisModuleIO*, const char*, const char*, ...);
  void (*SaveUnsigned)(RedisModuleIO*, uint64_t);
  uint64_t (*LoadUnsigned)(RedisModuleIO*);
  void (*SaveStringBuffer)(RedisModuleIO*, const char*, size_t);
  char* (*LoadStringBuffer)(RedisModuleIO*, size_t*);
  int (*IsIOError)(RedisModuleIO*);
  // Redis's allocator: memory taken here counts in used_memory and maxmemory.
  void* (*TryAlloc)(size_t);  // NULL when out of memory (Redis 7.0+)
  void* (*Calloc)(size_t, size_t);
  void (*Free)(void*);
  void (*Log)(RedisModuleCtx*, const char*, const char*, ...);

  RedisModuleBlockedClient* (*BlockClient)(RedisModuleCtx*, RedisModuleCmdFunc, RedisModuleCmdFunc,
                                           void (*)(RedisModuleCtx*, void*), long long);
  int (*UnblockClient)(RedisModuleBlockedClient*, void*);
  void* (*GetBlockedClientPrivateData)(RedisModuleCtx*);
  int (*IsKeysPositionRequest)(RedisModuleCtx*);
  void (*KeyAtPos)(RedisModuleCtx*, int);
  int (*GetContextFlags)(RedisModuleCtx*);
};

extern Api api;

// Fill `api` from the context's GetApi pointer and register the module's
// name and version. Returns OK, or ERR when a function is missing or the
// name is taken.
int init(RedisModuleCtx* ctx, const char* name, int version);

}  // namespace rm
