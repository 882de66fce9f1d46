#!/usr/bin/env bash
# Export FizBuzNet to ONNX, stage fizbuz_package/ and pack model_store/fizbuz_package.mar.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

MODEL_NAME=fizbuz_package
PACKAGE_DIR=$ROOT/fizbuz_package
MODEL_STORE=${MODEL_STORE:-$ROOT/model_store}
WEIGHTS=$ROOT/assets/fizbuz_model.pth
# What the archive carries besides the converted model: the handler, the codec it imports, the signature.
SOURCES=(fizbuz_service.py fizbuz_codec.py signature.json)

usage() {
  cat <<USAGE
Usage: ./build_mar.sh [-h]

1. exports assets/fizbuz_model.pth to fizbuz_package/fizbuz.onnx (checks parity with PyTorch),
2. stages fizbuz_package/ with the handler, codec and signature.json,
3. runs model-archiver --convert (ONNX -> MXNet symbol + params) into
   \$MODEL_STORE/$MODEL_NAME.mar and checks the archive holds exactly what it should.
Safe to re-run: it rebuilds the archive from the committed weights each time.

Environment:
  MODEL_STORE   where the .mar goes (default: $ROOT/model_store)
  FIZBUZ_VENV   the virtual environment to use (default: $ROOT/.venv)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "build_mar.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

[ -f "$WEIGHTS" ] || die "no trained weights at $WEIGHTS: run '$PY train.py' to train them (about 5 s)"
ensure_venv

say "exporting ONNX and checking parity with PyTorch"
"$PY" "$ROOT/export_onnx.py" --quiet --weights "$WEIGHTS" --output "$PACKAGE_DIR/fizbuz.onnx"

say "staging $PACKAGE_DIR"
# Only the ONNX model and the sources below may be packed: clear anything else
# (leftovers of an interrupted conversion, __pycache__).
find "$PACKAGE_DIR" -mindepth 1 ! -name fizbuz.onnx -exec rm -rf {} +
for source in "${SOURCES[@]}"; do
  cp "$ROOT/$source" "$PACKAGE_DIR/"
done

say "archiving with model-archiver --convert"
mkdir -p "$MODEL_STORE"
"$VENV/bin/model-archiver" --model-name "$MODEL_NAME" --model-path "$PACKAGE_DIR" \
  --handler fizbuz_service:handle -c -f --export-path "$MODEL_STORE"

"$PY" "$ROOT/tools/check_archive.py" "$MODEL_STORE/$MODEL_NAME.mar"
say "built $MODEL_STORE/$MODEL_NAME.mar"
