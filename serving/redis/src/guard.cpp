#include "guard.hpp"

#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <new>

namespace fzai {

namespace {

// Copy the first line of `text` (LibTorch puts its C++ backtrace after it).
void first_line(const char* text, char* out, std::size_t size) noexcept {
  std::size_t n = 0;
  for (; text[n] && text[n] != '\n' && text[n] != '\r' && n + 1 < size; ++n) out[n] = text[n];
  out[n] = '\0';
}

}  // namespace

void describe_current_exception(char* out, std::size_t size) noexcept {
  if (size == 0) return;
  try {
    throw;
  } catch (const c10::Error& e) {
    first_line(e.what_without_backtrace(), out, size);
  } catch (const std::bad_alloc&) {
    first_line("out of memory", out, size);
  } catch (const std::exception& e) {
    first_line(e.what(), out, size);
  } catch (...) {
    first_line("unknown exception", out, size);
  }
}

void log_current_exception(RedisModuleCtx* ctx, const char* where) noexcept {
  char text[256];
  describe_current_exception(text, sizeof text);
  rm::api.Log(ctx, "warning", "fizbuz-ai: %s failed: %s", where, text);
}

}  // namespace fzai
