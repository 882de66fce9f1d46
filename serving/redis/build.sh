#!/usr/bin/env bash
# Build the Redis module (serving/redis/) against the venv's LibTorch.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${FIZBUZ_VENV:-$ROOT/.venv}
BUILD_DIR=${FIZBUZ_REDIS_BUILD_DIR:-$ROOT/build/redis}
JOBS=${FIZBUZ_REDIS_JOBS:-2}
SANITIZE=${FIZBUZ_REDIS_SANITIZE:-OFF}

usage() {
  cat <<USAGE
Usage: serving/redis/build.sh [-h]

Configures and builds the module with CMake against the LibTorch inside the
venv's pinned torch wheel (nothing is downloaded), and prints the .so's path.
A re-run rebuilds only what changed.

Environment:
  FIZBUZ_REDIS_BUILD_DIR  build folder (default: $ROOT/build/redis)
  FIZBUZ_REDIS_JOBS       parallel compile jobs (default: 2)
  FIZBUZ_REDIS_SANITIZE   ON: AddressSanitizer + UBSan (use its own build folder; redis-server
                          then needs LD_PRELOAD=\$(g++ -print-file-name=libasan.so))
  FIZBUZ_VENV             venv whose torch is used (default: $ROOT/.venv)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

die() { echo "build.sh: $*" >&2; exit 1; }
command -v cmake >/dev/null || die "cmake not found: apt-get install -y cmake g++"
[ -x "$VENV/bin/python" ] || die "no venv at $VENV: run scripts/setup_env.sh"
TORCH_PREFIX=$("$VENV/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') \
  || die "cannot import torch from $VENV"

# Configure once per torch/source folder; `cmake --build` re-runs it by itself
# when CMakeLists.txt changes.
stamp=$BUILD_DIR/fizbuz-configured-with.txt
settings="source=$HERE torch=$TORCH_PREFIX sanitize=$SANITIZE"
if ! { [ -f "$BUILD_DIR/CMakeCache.txt" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$settings" ]; }; then
  rm -f "$BUILD_DIR/CMakeCache.txt"
  cmake -S "$HERE" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DFIZBUZ_AI_SANITIZE="$SANITIZE" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DTorch_DIR="$TORCH_PREFIX/Torch" --log-level=WARNING >&2 \
    || die "cmake configure failed"
  echo "$settings" > "$stamp"
fi
cmake --build "$BUILD_DIR" --parallel "$JOBS" >&2 || die "build failed"
[ -f "$BUILD_DIR/fizbuz_ai.so" ] || die "the build finished but $BUILD_DIR/fizbuz_ai.so is missing"
echo "$BUILD_DIR/fizbuz_ai.so"
