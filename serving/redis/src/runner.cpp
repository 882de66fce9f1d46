#include "runner.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "guard.hpp"
#include "tensor.hpp"

namespace fzai {
namespace {

// Never destroyed: at exit, destroying a condition variable that the worker
// threads wait on would block Redis's shutdown forever.
struct Queue {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Job*> jobs;
};
Queue& the_queue = *new Queue;
std::condition_variable& timekeeper_wake = *new std::condition_variable;
const char* const kTimedOut = "TIMEDOUT the run did not start within its TIMEOUT";
std::mutex& queue_mutex = the_queue.mutex;
std::condition_variable& queue_ready = the_queue.ready;
std::deque<Job*>& queue = the_queue.jobs;

int64_t rows(const Job* job) { return job->inputs.empty() ? 0 : job->inputs[0].size(0); }

// Runs can share a forward pass when their inputs agree in everything but dimension 0.
bool joinable(const Job* a, const Job* b) {
  if (a->model != b->model || a->inputs.size() != b->inputs.size()) return false;
  for (std::size_t i = 0; i < a->inputs.size(); ++i) {
    const auto& x = a->inputs[i];
    const auto& y = b->inputs[i];
    if (x.scalar_type() != y.scalar_type() || x.dim() != y.dim() || x.dim() == 0) return false;
    if (x.sizes().slice(1) != y.sizes().slice(1)) return false;
  }
  return true;
}

// Take the next batch off the queue (blocks). Jobs are looked at oldest first;
// each job that could not join an older one heads a batch of its model: later
// jobs join while the rows fit in BATCHSIZE. A batch short of MINBATCHSIZE
// waits (until MINBATCHTIMEOUT or its head's TIMEOUT) without holding up the
// batches behind it: those of other models, or of other input shapes, run.
std::vector<Job*> next_batch() {
  std::unique_lock<std::mutex> lock(queue_mutex);
  for (;;) {
    queue_ready.wait(lock, [] { return !queue.empty(); });
    auto wake = Clock::time_point::max();
    const auto now = Clock::now();
    for (std::size_t h = 0; h < queue.size(); ++h) {
      Job* head = queue[h];
      bool joins_older = false;
      for (std::size_t e = 0; e < h && !joins_older; ++e) joins_older = joinable(queue[e], head);
      if (joins_older) continue;  // it was looked at with that older job's batch
      const ModelSettings& s = head->model->settings;
      std::vector<std::size_t> picked = {h};
      int64_t total = rows(head);
      if (s.batchsize > 0 && !head->inputs.empty()) {
        for (std::size_t i = h + 1; i < queue.size() && total < s.batchsize; ++i) {
          if (joinable(head, queue[i]) && total + rows(queue[i]) <= s.batchsize) {
            picked.push_back(i);
            total += rows(queue[i]);
          }
        }
        if (s.minbatchsize > 0 && total < s.minbatchsize) {
          auto until = Clock::time_point::max();
          if (s.minbatchtimeout > 0) until = head->queued_at + std::chrono::milliseconds(s.minbatchtimeout);
          if (head->has_deadline) until = std::min(until, head->deadline);
          if (now < until) {
            wake = std::min(wake, until);
            continue;  // this batch waits for rows; look at the next one
          }
        }
      }
      std::vector<Job*> batch;
      for (auto it = picked.rbegin(); it != picked.rend(); ++it) {
        batch.insert(batch.begin(), queue[*it]);
        queue.erase(queue.begin() + static_cast<long>(*it));
      }
      return batch;
    }
    // Every queued batch waits for rows: sleep until a new job or the first wait's end.
    if (wake == Clock::time_point::max()) {
      queue_ready.wait(lock);
    } else {
      queue_ready.wait_until(lock, wake);
    }
  }
}

// The model's outputs as a list of tensors.
std::vector<at::Tensor> unpack(const c10::IValue& result) {
  std::vector<at::Tensor> out;
  if (result.isTensor()) {
    out.push_back(result.toTensor());
  } else if (result.isTuple()) {
    for (const auto& v : result.toTupleRef().elements()) out.push_back(v.toTensor());
  } else if (result.isTensorList()) {
    for (const auto& t : result.toTensorVector()) out.push_back(t);
  } else {
    throw std::runtime_error("the model returned " + result.tagKind() + ", not tensors");
  }
  return out;
}

// One forward pass for the whole batch; outputs split back by rows.
void run_batch(const std::vector<Job*>& batch) {
  Model& model = *batch[0]->model;
  const auto started = Clock::now();
  std::string error;
  try {
    c10::InferenceMode guard;
    std::vector<c10::IValue> args;
    for (std::size_t i = 0; i < batch[0]->inputs.size(); ++i) {
      if (batch.size() == 1) {
        // A copy: the stored key's tensor is read by the main thread (TENSORGET,
        // AOF, replication) while the model runs, and a model may change its
        // inputs in place (mul_, resize_, as_strided_ with stride 0 ...).
        args.emplace_back(batch[0]->inputs[i].clone());
      } else {  // at::cat makes a new tensor
        std::vector<at::Tensor> parts;
        for (const Job* job : batch) parts.push_back(job->inputs[i]);
        args.emplace_back(at::cat(parts, 0));
      }
    }
    auto outputs = unpack(model.module.forward(args));
    for (const auto& out : outputs) {
      std::string why;
      if (!storable(out, why)) throw std::runtime_error(why);
    }
    int64_t total = 0;
    for (const Job* job : batch) total += rows(job);
    for (Job* job : batch) {
      if (outputs.size() != job->output_keys.size()) {
        throw std::runtime_error("the model returned " + std::to_string(outputs.size()) +
                                 " outputs but OUTPUTS names " + std::to_string(job->output_keys.size()));
      }
    }
    int64_t offset = 0;
    for (Job* job : batch) {
      for (const auto& out : outputs) {
        if (batch.size() > 1 && (out.dim() == 0 || out.size(0) != total)) {
          throw std::runtime_error("a batched run's output does not have the batch's rows in dimension 0");
        }
        at::Tensor part = batch.size() > 1 ? out.narrow(0, offset, rows(job)) : out;
        // An owned, contiguous copy in Redis's memory: it outlives the batch and is
        // stored in a key (an output may alias an input or use stride tricks).
        job->outputs.push_back(to_redis_memory(part));
      }
      offset += rows(job);
    }
  } catch (const c10::Error& e) {
    error = "ERR model run failed: " + torch_error_line(e.what_without_backtrace());
  } catch (const std::exception& e) {
    error = "ERR model run failed: " + torch_error_line(e.what());
  }
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
  model.stats.forwards++;
  model.stats.duration_us += static_cast<uint64_t>(us);
  for (Job* job : batch) {
    model.stats.calls++;
    model.stats.samples += static_cast<uint64_t>(rows(job));
    if (!error.empty()) {
      job->error = error;
      job->outputs.clear();
      model.stats.errors++;
    }
  }
}

// TIMEOUT is kept here, not with Redis's blocked-client timeout: in Redis 7.0 a
// client whose run is unblocked just as that timeout fires gets no reply at all.
// This thread takes queued jobs off the queue when their deadline passes and
// unblocks them with TIMEDOUT; a run already started is left to finish.
void expire_jobs() {
  std::unique_lock<std::mutex> lock(queue_mutex);
  for (;;) {
    auto next = Clock::time_point::max();
    std::vector<Job*> expired;
    const auto now = Clock::now();
    for (auto it = queue.begin(); it != queue.end();) {
      Job* job = *it;
      if (job->has_deadline && job->deadline <= now) {
        expired.push_back(job);
        it = queue.erase(it);
      } else {
        if (job->has_deadline) next = std::min(next, job->deadline);
        ++it;
      }
    }
    if (!expired.empty()) {
      queue_ready.notify_all();  // a worker waiting on an expired head looks again
      lock.unlock();
      for (Job* job : expired) {
        job->error = kTimedOut;
        job->model->stats.errors++;
        rm::api.UnblockClient(job->client, job);
      }
      lock.lock();
      continue;
    }
    if (next == Clock::time_point::max()) {
      timekeeper_wake.wait(lock);
    } else {
      timekeeper_wake.wait_until(lock, next);
    }
  }
}

void timekeeper() {
  // An exception escaping a thread's function would end the whole server.
  for (;;) or_on_exception(0, "the TIMEOUT thread", [] { expire_jobs(); return 0; });
}

void serve_one_batch() {
  std::vector<Job*> batch = next_batch();
  std::vector<Job*> ready;
  const auto now = Clock::now();
  for (Job* job : batch) {
    if (job->has_deadline && now > job->deadline) {
      job->error = kTimedOut;
      job->model->stats.errors++;
      rm::api.UnblockClient(job->client, job);
    } else {
      ready.push_back(job);
    }
  }
  if (!ready.empty()) run_batch(ready);  // catches everything: each job gets outputs or an error
  for (Job* job : ready) rm::api.UnblockClient(job->client, job);
}

void worker() {
  // OpenMP's thread count is per thread: without this, batched forwards in this
  // thread start a parallel region whose spinning threads compete with Redis's
  // main thread for the cores (10x the CPU per prediction on 2 cores).
  at::init_num_threads();
  at::set_num_threads(1);
  // An exception escaping a thread's function would end the whole server.
  for (;;) or_on_exception(0, "a run thread", [] { serve_one_batch(); return 0; });
}

}  // namespace

void start_workers(int threads) {
  for (int i = 0; i < threads; ++i) std::thread(worker).detach();
  std::thread(timekeeper).detach();
}

void submit(Job* job) {
  job->queued_at = Clock::now();
  {
    std::lock_guard<std::mutex> lock(queue_mutex);
    queue.push_back(job);
  }
  // Every worker may be waiting for MINBATCHSIZE: wake them all.
  queue_ready.notify_all();
  if (job->has_deadline) timekeeper_wake.notify_one();
}

}  // namespace fzai
