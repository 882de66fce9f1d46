// C++ exceptions must never reach Redis's C code: one that unwinds into a C
// frame ends in std::terminate, which aborts the whole server (and with it
// every client and every key not yet saved). Every function Redis calls (the
// commands, the blocked-client reply, the data types' callbacks) goes through
// one of these, which turn an exception into an error reply or a logged failure.
#pragma once

#include <cstddef>

#include "module_api.h"

namespace fzai {

// Writes the one-line text of the exception being handled into `out` (call it
// only inside a catch block). Allocates nothing: it also runs for bad_alloc.
void describe_current_exception(char* out, std::size_t size) noexcept;

// Logs the exception being handled, with `where` (a literal) for context.
void log_current_exception(RedisModuleCtx* ctx, const char* where) noexcept;

// A command handler that answers "ERR internal error: ..." instead of throwing.
template <RedisModuleCmdFunc Command>
int guarded(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) noexcept {
  try {
    return Command(ctx, argv, argc);
  } catch (...) {
    char text[320] = "ERR internal error: ";
    constexpr std::size_t prefix = sizeof "ERR internal error: " - 1;
    describe_current_exception(text + prefix, sizeof text - prefix);
    rm::api.Log(ctx, "warning", "fizbuz-ai: a command failed with an exception: %s", text + prefix);
    return rm::api.ReplyWithError(ctx, text);
  }
}

// Runs `body`; on an exception logs it with `where` and returns `fallback`.
template <typename Result, typename Body>
Result or_on_exception(Result fallback, const char* where, Body&& body) noexcept {
  try {
    return body();
  } catch (...) {
    log_current_exception(nullptr, where);
    return fallback;
  }
}

}  // namespace fzai
