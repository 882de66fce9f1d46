// --bench: time the runner's calls inside one process, for bench/bench_runners.py.
#pragma once

#include "runner.hpp"

namespace fizbuz {

// Times `calls` forward passes (input already encoded) and `calls` full
// classify() calls (numbers in, classes out) on the first `batch_size` valid
// inputs, after a warm-up, and prints one line:
//   bench batch_size=B calls=N forward_us=F classify_us=C
// F and C are the mean microseconds per call.
void run_bench(Runner& runner, long batch_size, long calls);

}  // namespace fizbuz
