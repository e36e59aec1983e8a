#!/usr/bin/env bash
# Regenerate constraints.txt (CPU) and constraints-cuda.txt from the current .venv.
# Run after changing pins in a fresh `.venv` that passes the tests. `pip list` (not `pip freeze`)
# writes name==version even for a package installed from a locally built wheel (llama-cpp-python).
# torch is written as ==X.Y.Z without the +cpu label: the same pin then takes the
# CPU wheel here and PyPI's CUDA build on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
header="# Tested lock for zoo, Python 3.11. Regenerate with scripts/lock.sh."
{
  echo "$header"
  echo "# CPU machines: pip install -c constraints.txt -e '.[cpu,test]'"
  .venv/bin/pip list --format=freeze --exclude-editable | grep -Ev "^(zoo|pip|setuptools)==" | sed -E 's/^(torch==[0-9.]+)\+cpu$/\1/'
} > constraints.txt
{
  echo "$header"
  echo "# CUDA machines: pip install -c constraints-cuda.txt -e '.[gpu,test]'"
  echo "# (onnxruntime-gpu replaces onnxruntime: never install both in one environment)"
  grep -v '^#' constraints.txt | sed -E 's/^onnxruntime==/onnxruntime-gpu==/'
} > constraints-cuda.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins) and constraints-cuda.txt"
