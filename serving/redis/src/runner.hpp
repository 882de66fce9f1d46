// Runs models off Redis's main thread: a queue of jobs served by worker
// threads, which join queued runs of the same model into one forward pass
// when the model has a BATCHSIZE.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "model.hpp"
#include "module_api.h"

namespace fzai {

using Clock = std::chrono::steady_clock;

struct Job {
  std::shared_ptr<Model> model;
  std::vector<at::Tensor> inputs;
  std::vector<std::string> output_keys;
  bool has_deadline = false;
  Clock::time_point deadline;  // from TIMEOUT: a job not started by then is not run
  Clock::time_point queued_at;
  RedisModuleBlockedClient* client = nullptr;
  // Set by the worker:
  std::vector<at::Tensor> outputs;
  std::string error;
};

// Start `threads` worker threads (once, at module load).
void start_workers(int threads);

// Queue a job; a worker runs it and unblocks job->client with the job as
// private data.
void submit(Job* job);

}  // namespace fzai
