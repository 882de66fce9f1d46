#include "module_api.h"

namespace rm {

Api api;

namespace {

// Look one function up by its exported name ("RedisModule_" + short name).
template <typename Fn>
bool load(const char* name, Fn& slot) {
  char full[96] = "RedisModule_";
  std::size_t used = 12;
  for (const char* p = name; *p && used + 1 < sizeof full; ++p) full[used++] = *p;
  full[used] = '\0';
  return api.GetApi(full, static_cast<void*>(&slot)) == OK;
}

}  // namespace

int init(RedisModuleCtx* ctx, const char* name, int version) {
  // The context's first field is the GetApi function pointer.
  api.GetApi = *reinterpret_cast<int (**)(const char*, void*)>(ctx);
  bool ok = true;
#define RM_LOAD(fn) ok = load(#fn, api.fn) && ok
  RM_LOAD(SetModuleAttribs);
  RM_LOAD(SetModuleOptions);
  RM_LOAD(IsModuleNameBusy);
  RM_LOAD(CreateCommand);
  RM_LOAD(CreateDataType);
  RM_LOAD(WrongArity);
  RM_LOAD(ReplyWithError);
  RM_LOAD(ReplyWithSimpleString);
  RM_LOAD(ReplyWithLongLong);
  RM_LOAD(ReplyWithDouble);
  RM_LOAD(ReplyWithArray);
  RM_LOAD(ReplySetArrayLength);
  RM_LOAD(ReplyWithStringBuffer);
  RM_LOAD(StringPtrLen);
  RM_LOAD(StringToLongLong);
  RM_LOAD(StringToDouble);
  RM_LOAD(CreateString);
  RM_LOAD(FreeString);
  RM_LOAD(OpenKey);
  RM_LOAD(CloseKey);
  RM_LOAD(KeyType);
  RM_LOAD(DeleteKey);
  RM_LOAD(ModuleTypeSetValue);
  RM_LOAD(ModuleTypeGetType);
  RM_LOAD(ModuleTypeGetValue);
  RM_LOAD(ReplicateVerbatim);
  RM_LOAD(Replicate);
  RM_LOAD(EmitAOF);
  RM_LOAD(SaveUnsigned);
  RM_LOAD(LoadUnsigned);
  RM_LOAD(SaveStringBuffer);
  RM_LOAD(LoadStringBuffer);
  RM_LOAD(IsIOError);
  RM_LOAD(TryAlloc);
  RM_LOAD(Calloc);
  RM_LOAD(Free);
  RM_LOAD(Log);
  RM_LOAD(BlockClient);
  RM_LOAD(UnblockClient);
  RM_LOAD(GetBlockedClientPrivateData);
  RM_LOAD(IsKeysPositionRequest);
  RM_LOAD(KeyAtPos);
  RM_LOAD(GetContextFlags);
#undef RM_LOAD
  if (!ok) return ERR;
  if (api.IsModuleNameBusy(name)) return ERR;
  api.SetModuleAttribs(ctx, name, version, APIVER_1);
  return OK;
}

}  // namespace rm
