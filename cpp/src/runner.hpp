// FizBuzNet from a TorchScript file (python -m fizbuz.torchscript), run by LibTorch.
// Torch stays behind this interface so only runner.cpp pays its compile time.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fizbuz {

// The model file is missing, unreadable, not TorchScript, or not FizBuzNet-shaped.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The line of a LibTorch error message that says what went wrong, without
// the C++ backtrace or TorchScript traceback around it.
std::string error_summary(std::string_view text);

class Runner {
 public:
  // Loads and checks the model: one forward on a dummy input must give
  // one row of one logit per class. Throws ModelError.
  explicit Runner(const std::string& model_path);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Class index for each input n (already validated), i.e. for n + 1: encode,
  // one forward pass for the whole batch, argmax.
  std::vector<int> classify(const std::vector<long>& numbers);

  // For timing: encode once, then run only the forward pass as often as asked.
  // (shared_ptr: its deleter is made where the type is complete, in runner.cpp.)
  class EncodedBatch;
  std::shared_ptr<const EncodedBatch> encode(const std::vector<long>& numbers) const;
  void forward(const EncodedBatch& batch);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fizbuz
