#!/usr/bin/env bash
# Configure and build the C++ LibTorch runner (cpp/) out of tree with CMake.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

SOURCE_DIR=$ROOT/cpp
BUILD_DIR=${FIZBUZ_CPP_BUILD_DIR:-$ROOT/build/cpp}
JOBS=${FIZBUZ_CPP_JOBS:-2}
BUILD_TIMEOUT=${FIZBUZ_CPP_BUILD_TIMEOUT:-900}
CXX=${CXX:-g++}

usage() {
  cat <<USAGE
Usage: cpp/build.sh [-h]

Builds cpp/ (C++17) against the LibTorch inside the venv's pinned torch wheel
(torch.utils.cmake_prefix_path; nothing is downloaded) into \$FIZBUZ_CPP_BUILD_DIR,
and prints the binary's path. Re-runs only rebuild what changed (a no-change
re-run takes seconds). A fresh build takes one to two minutes on 2 cores.

Then:  .venv/bin/python -m fizbuz.torchscript      # writes build/fizbuz.pt
       $BUILD_DIR/fizbuz_cli build/fizbuz.pt 14

Needs cmake >= 3.18 and a C++17 compiler (apt-get install -y cmake g++).
CMake's warning "library kineto not found" is expected: the wheel leaves out the
profiler library, which the runner does not use.

Environment:
  FIZBUZ_CPP_BUILD_DIR      build folder (default: $ROOT/build/cpp)
  FIZBUZ_CPP_JOBS           parallel compile jobs (default: 2)
  FIZBUZ_CPP_BUILD_TIMEOUT  seconds before configure or build is stopped (default: 900)
  CXX                       C++ compiler (default: g++)
  FIZBUZ_VENV               the virtual environment whose torch is used (default: $ROOT/.venv)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "cpp/build.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

command -v cmake >/dev/null 2>&1 \
  || die "cmake not found on PATH: install it (apt-get install -y cmake; 3.18 or newer)"
command -v "$CXX" >/dev/null 2>&1 \
  || die "C++ compiler '$CXX' not found: install g++ (apt-get install -y g++) or set CXX"
ensure_venv

TORCH_PREFIX=$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') \
  || die "cannot import torch from $VENV: run scripts/setup_env.sh"
[ -f "$TORCH_PREFIX/Torch/TorchConfig.cmake" ] \
  || die "no TorchConfig.cmake under $TORCH_PREFIX: this torch wheel does not ship LibTorch's CMake files"

# Settings cmake cannot change in an existing build folder: a different
# compiler makes it drop its cache (and our -D settings with it), a moved
# checkout makes it refuse to run. If any of them changed, start afresh.
COMPILER=$(readlink -f "$(command -v "$CXX")")
settings="source=$SOURCE_DIR compiler=$COMPILER torch=$TORCH_PREFIX python=$PY"
stamp=$BUILD_DIR/fizbuz-configured-with.txt
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
  if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$settings" ]; }; then
    say "$BUILD_DIR was configured with other settings: clearing it"
    rm -rf "$BUILD_DIR"
  fi
elif [ -d "$BUILD_DIR" ] && [ -n "$(ls -A "$BUILD_DIR")" ]; then
  # Never clear a folder that is not ours (FIZBUZ_CPP_BUILD_DIR may point anywhere).
  die "$BUILD_DIR is not empty and is not a CMake build folder: choose another FIZBUZ_CPP_BUILD_DIR"
fi

say "configuring $BUILD_DIR (LibTorch from $TORCH_PREFIX)"
timeout "$BUILD_TIMEOUT" cmake -S "$SOURCE_DIR" -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$COMPILER" \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DTorch_DIR="$TORCH_PREFIX/Torch" \
  -DPython3_EXECUTABLE="$PY" \
  --log-level=WARNING \
  || die "cmake configure failed (or took over ${BUILD_TIMEOUT}s); see the messages above"
echo "$settings" > "$stamp"

say "building with $JOBS jobs (a fresh build takes one to two minutes)"
timeout "$BUILD_TIMEOUT" cmake --build "$BUILD_DIR" --parallel "$JOBS" \
  || die "build failed (or took over ${BUILD_TIMEOUT}s); see the compiler messages above"

BINARY=$BUILD_DIR/fizbuz_cli
[ -x "$BINARY" ] || die "the build finished but $BINARY is missing"
say "built $BINARY"
