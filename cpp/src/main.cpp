// fizbuz_cli: FizzBuzz for the next number, from FizBuzNet traced to TorchScript.
//
// Exit status: 0 answered; 1 the model could not be loaded or run;
// 2 bad input or bad command line (nothing is answered for a bad input).

#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench.hpp"
#include "fizbuz_codec_generated.hpp"
#include "rules.hpp"
#include "runner.hpp"

namespace {

constexpr int kExitModel = 1;
constexpr int kExitInput = 2;
// Batch mode answers this many lines per forward pass.
constexpr std::size_t kChunkSize = 1024;
constexpr long kMaxBenchCalls = 100'000'000;
constexpr long kMaxBenchBatch = 4096;

const char* const kUsage =
    "Usage:\n"
    "  fizbuz_cli MODEL N                  print the FizzBuzz label of N + 1\n"
    "  fizbuz_cli MODEL --batch            read numbers from stdin, one per line; answer one per line\n"
    "  fizbuz_cli MODEL --bench CALLS [--batch-size B]\n"
    "                                      time CALLS forward passes on B inputs (default 1)\n"
    "  fizbuz_cli -h | --help\n"
    "\n"
    "MODEL is a TorchScript file made by python -m fizbuz.torchscript (it writes build/fizbuz.pt).\n"
    "N is an integer from MIN to MAX: an optional '-' and decimal digits, nothing else.\n"
    "The answer is N + 1 itself, or Fizz, Buzz or FizzBuzz.\n"
    "\n"
    "--batch stops at the first bad line: the lines before it are answered on stdout,\n"
    "the bad line is reported on stderr as 'line K: ...', and the exit status is 2.\n"
    "\n"
    "Exit status: 0 answered, 1 model missing or unusable, 2 bad input or usage.\n";

void print_usage(std::FILE* stream) {
  std::string text = kUsage;
  for (const auto& [name, value] : {std::pair{"MIN", fizbuz::codec::kMinInput},
                                    std::pair{"MAX", fizbuz::codec::kMaxInput}}) {
    text.replace(text.find(name), std::string_view(name).size(), std::to_string(value));
  }
  std::fputs(text.c_str(), stream);
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "fizbuz_cli: %s\nRun 'fizbuz_cli --help' for usage.\n", message.c_str());
  return kExitInput;
}

int input_error(const std::string& message) {
  std::fprintf(stderr, "fizbuz_cli: %s\n", message.c_str());
  return kExitInput;
}

// A positive count for --bench/--batch-size, or nothing.
std::optional<long> parse_count(std::string_view text, long max) {
  if (text.empty() || text.size() > 10) {
    return std::nullopt;
  }
  long value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > max) {
    return std::nullopt;
  }
  return value;
}

void answer(fizbuz::Runner& runner, const std::vector<long>& numbers) {
  const std::vector<int> classes = runner.classify(numbers);
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    std::cout << fizbuz::readable(numbers[i] + 1, classes[i]) << '\n';
  }
}

int run_single(const std::string& model_path, std::string_view text) {
  const fizbuz::ParsedInput input = fizbuz::parse_input(text);
  if (!input.number) {
    return input_error(input.error);
  }
  fizbuz::Runner runner(model_path);
  answer(runner, {*input.number});
  std::cout.flush();
  return 0;
}

int run_batch(const std::string& model_path) {
  fizbuz::Runner runner(model_path);
  std::vector<long> pending;
  std::string line;
  long line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    const fizbuz::ParsedInput input = fizbuz::parse_input(line);
    if (!input.number) {
      // Answer every line before the bad one, then stop.
      answer(runner, pending);
      std::cout.flush();
      return input_error("line " + std::to_string(line_number) + ": " + input.error);
    }
    pending.push_back(*input.number);
    if (pending.size() == kChunkSize) {
      answer(runner, pending);
      pending.clear();
    }
  }
  if (std::cin.bad()) {
    std::fprintf(stderr, "fizbuz_cli: error reading stdin after line %ld\n", line_number);
    return kExitInput;
  }
  answer(runner, pending);
  std::cout.flush();
  return 0;
}

int run_bench(const std::string& model_path, const std::vector<std::string_view>& args) {
  // args: CALLS [--batch-size B]
  if (args.size() != 1 && !(args.size() == 3 && args[1] == "--batch-size")) {
    return usage_error("--bench takes CALLS and optionally --batch-size B");
  }
  const auto calls = parse_count(args[0], kMaxBenchCalls);
  if (!calls) {
    return usage_error("--bench CALLS must be an integer from 1 to " + std::to_string(kMaxBenchCalls));
  }
  std::optional<long> batch_size = 1;
  if (args.size() == 3) {
    batch_size = parse_count(args[2], kMaxBenchBatch);
    if (!batch_size) {
      return usage_error("--batch-size must be an integer from 1 to " + std::to_string(kMaxBenchBatch));
    }
  }
  fizbuz::Runner runner(model_path);
  fizbuz::run_bench(runner, *batch_size, *calls);
  return 0;
}

int run(const std::vector<std::string_view>& args) {
  for (const auto arg : args) {
    if (arg == "-h" || arg == "--help") {
      print_usage(stdout);
      return 0;
    }
  }
  if (args.size() < 2) {
    std::fputs("fizbuz_cli: expected a model file and a number (or --batch / --bench)\n\n", stderr);
    print_usage(stderr);
    return kExitInput;
  }
  const std::string model_path(args[0]);
  const std::string_view mode = args[1];
  const std::vector<std::string_view> rest(args.begin() + 2, args.end());
  if (mode == "--batch") {
    if (!rest.empty()) {
      return usage_error("--batch takes no further arguments");
    }
    return run_batch(model_path);
  }
  if (mode == "--bench") {
    return run_bench(model_path, rest);
  }
  if (mode.size() > 2 && mode.substr(0, 2) == "--") {
    return usage_error("unknown option " + fizbuz::quoted(mode));
  }
  if (!rest.empty()) {
    return usage_error("expected one number; use --batch for many");
  }
  return run_single(model_path, mode);
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  try {
    return run(std::vector<std::string_view>(argv + 1, argv + argc));
  } catch (const fizbuz::ModelError& error) {
    std::fprintf(stderr, "fizbuz_cli: %s\n", error.what());
    return kExitModel;
  } catch (const std::exception& error) {
    // A fault in LibTorch while running (c10::Error is a std::exception).
    std::fprintf(stderr, "fizbuz_cli: error: %s\n", fizbuz::error_summary(error.what()).c_str());
    return kExitModel;
  }
}
