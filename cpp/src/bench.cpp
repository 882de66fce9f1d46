#include "bench.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include "fizbuz_codec_generated.hpp"

namespace fizbuz {
namespace {

// Enough calls for the TorchScript profiling executor to settle on its
// optimised plan before the clock starts.
constexpr long kWarmUpCalls = 50;

template <typename Call>
double mean_microseconds(long calls, Call call) {
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < calls; ++i) {
    call();
  }
  const std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / static_cast<double>(calls);
}

}  // namespace

void run_bench(Runner& runner, long batch_size, long calls) {
  const long input_count = codec::kMaxInput - codec::kMinInput + 1;
  std::vector<long> numbers;
  for (long i = 0; i < batch_size; ++i) {
    numbers.push_back(codec::kMinInput + i % input_count);
  }
  const auto encoded = runner.encode(numbers);

  mean_microseconds(kWarmUpCalls, [&] { runner.forward(*encoded); });
  const double forward_us = mean_microseconds(calls, [&] { runner.forward(*encoded); });
  mean_microseconds(kWarmUpCalls, [&] { runner.classify(numbers); });
  const double classify_us = mean_microseconds(calls, [&] { runner.classify(numbers); });

  char line[160];
  std::snprintf(line, sizeof line, "bench batch_size=%ld calls=%ld forward_us=%.3f classify_us=%.3f\n",
                batch_size, calls, forward_us, classify_us);
  std::cout << line << std::flush;
}

}  // namespace fizbuz
