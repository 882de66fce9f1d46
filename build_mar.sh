#!/usr/bin/env bash
# Export FizBuzNet to ONNX, stage fizbuz_package/ and pack model_store/fizbuz_package.mar.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

usage() {
  cat <<USAGE
Usage: ./build_mar.sh [-h]

1. exports assets/fizbuz_model.pth to fizbuz_package/fizbuz.onnx (checks parity with PyTorch),
2. stages fizbuz_package/ with the handler, codec and signature.json,
3. runs model-archiver --convert (ONNX -> MXNet symbol + params) into
   \$MODEL_STORE/fizbuz_package.mar and checks the archive holds exactly what it should.
Safe to re-run: it rebuilds the archive from the committed weights each time.

Environment:
  FIZBUZ_MODEL_STORE   where the .mar goes (default: $ROOT/model_store)
  FIZBUZ_STAGING_DIR   where the archive's folder is staged (default: $ROOT/fizbuz_package)
  FIZBUZ_WEIGHTS  the trained weights to export (default: $ROOT/assets/fizbuz_model.pth)
  FIZBUZ_VENV   the virtual environment to use (default: $ROOT/.venv)
USAGE
}
help_or_no_arguments "$@"

ensure_venv
# Names and paths come from the one contract module (fizbuz/contract.py).
{ read -r MODEL_NAME; read -r HANDLER; read -r -a SOURCES; } \
  < <("$PY" -m fizbuz.contract MODEL_NAME HANDLER ARCHIVE_SOURCES)
{ read -r WEIGHTS; read -r PACKAGE_DIR; read -r MODEL_STORE; } \
  < <("$PY" -m fizbuz.settings get weights staging_dir model_store)
[ -f "$WEIGHTS" ] || die "no trained weights at $WEIGHTS: run '$PY -m fizbuz.train' to train them (about 5 s)"

say "exporting ONNX and checking parity with PyTorch"
mkdir -p "$PACKAGE_DIR"
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
  --handler "$HANDLER" -c -f --export-path "$MODEL_STORE"

"$PY" -m fizbuz.archive "$MODEL_STORE/$MODEL_NAME.mar"
say "built $MODEL_STORE/$MODEL_NAME.mar"
