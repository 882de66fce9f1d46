#include "runner.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>

#include <ATen/Parallel.h>
#include <torch/script.h>

#include "fizbuz_codec_generated.hpp"

namespace fizbuz {
namespace {

torch::Tensor encode_tensor(const std::vector<long>& numbers) {
  auto batch = torch::empty({static_cast<long>(numbers.size()), codec::kBits}, torch::kFloat32);
  auto rows = batch.accessor<float, 2>();
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    const auto& bits = codec::kNextNumberBits.at(static_cast<std::size_t>(numbers[i] - codec::kMinInput));
    for (int b = 0; b < codec::kBits; ++b) {
      rows[static_cast<long>(i)][b] = bits[static_cast<std::size_t>(b)];
    }
  }
  return batch;
}

}  // namespace

std::string error_summary(std::string_view text) {
  // The interpreter puts the TorchScript traceback first and the cause last.
  if (text.find("Traceback of TorchScript") != std::string_view::npos) {
    while (!text.empty() && text.back() == '\n') {
      text.remove_suffix(1);
    }
    return std::string(text.substr(text.rfind('\n') + 1));
  }
  return std::string(text.substr(0, text.find('\n')));
}

class Runner::EncodedBatch {
 public:
  explicit EncodedBatch(torch::Tensor tensor) : tensor(std::move(tensor)) {}
  torch::Tensor tensor;
};

struct Runner::Impl {
  torch::jit::Module module;

  torch::Tensor logits(const torch::Tensor& batch) {
    return module.forward({batch}).toTensor();
  }
};

Runner::Runner(const std::string& model_path) : impl_(std::make_unique<Impl>()) {
  // A call is a few thousand multiply-adds: extra threads only add hand-off cost
  // and compete on a shared host (MMS workers also run with OMP_NUM_THREADS=1).
  at::set_num_threads(1);

  // torch::jit::load's own message for a missing file is buried in a backtrace.
  if (!std::ifstream(model_path, std::ios::binary)) {
    throw ModelError("cannot open model file " + model_path + ": " + std::strerror(errno));
  }
  try {
    impl_->module = torch::jit::load(model_path, torch::kCPU);
  } catch (const c10::Error& error) {
    throw ModelError(model_path + " is not a TorchScript model (make one with python -m fizbuz.torchscript): " +
                     error_summary(error.what_without_backtrace()));
  }
  impl_->module.eval();

  const long classes = static_cast<long>(codec::kClassLabels.size());
  torch::Tensor probe;
  try {
    c10::InferenceMode guard;
    probe = impl_->logits(torch::zeros({1, codec::kBits}));
  } catch (const std::exception& error) {
    // c10::Error, or torch::jit::JITException from inside the graph.
    throw ModelError(model_path + " cannot answer a [1, " + std::to_string(codec::kBits) +
                     "] input as FizBuzNet does: " + error_summary(error.what()));
  }
  if (probe.dim() != 2 || probe.size(0) != 1 || probe.size(1) != classes) {
    throw ModelError(model_path + " returns shape " + c10::str(probe.sizes()) + " for one input, expected [1, " +
                     std::to_string(classes) + "]: is it FizBuzNet?");
  }
}

Runner::~Runner() = default;

std::vector<int> Runner::classify(const std::vector<long>& numbers) {
  if (numbers.empty()) {
    return {};
  }
  c10::InferenceMode guard;
  const torch::Tensor classes = impl_->logits(encode_tensor(numbers)).argmax(1);
  std::vector<int> result(numbers.size());
  const auto indices = classes.accessor<int64_t, 1>();
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    result[i] = static_cast<int>(indices[static_cast<long>(i)]);
  }
  return result;
}

std::shared_ptr<const Runner::EncodedBatch> Runner::encode(const std::vector<long>& numbers) const {
  return std::make_shared<const EncodedBatch>(encode_tensor(numbers));
}

void Runner::forward(const EncodedBatch& batch) {
  c10::InferenceMode guard;
  impl_->logits(batch.tensor);
}

}  // namespace fizbuz
