#!/usr/bin/env bash
# Idempotent installer for the DeepCIS stack: torch, mmcv 2.1.0 with compiled ops (built from source),
# mmengine 0.10.7, mmdet 3.3.0 and this package (editable).
#
#   scripts/install.sh            # into ./.venv (created if missing)
#   DEEPCIS_USE_ACTIVE_ENV=1 scripts/install.sh   # into the active Python environment (e.g. a CUDA env)
#
# Env: PYTHON (interpreter used to create .venv, default python3), MAX_JOBS (mmcv build jobs, default nproc),
#      DEEPCIS_TORCH (torch requirement used only when no torch is installed, default torch==2.13.0).
# A re-run with nothing changed only checks a stamp and imports (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

die() { echo "install: $*" >&2; exit 1; }
step() {  # step NAME CMD...: run CMD, on failure name the step and show the end of its log
  local name=$1; shift
  local log; log=$(mktemp "${TMPDIR:-/tmp}/deepcis-install.XXXXXX")
  echo "install: $name ..."
  if ! "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "step '$name' failed (full log: $log)"
  fi
  rm -f "$log"
}

# ---- interpreter -------------------------------------------------------------------------------
if [ "${DEEPCIS_USE_ACTIVE_ENV:-0}" = "1" ]; then
  PY=$(command -v python || command -v python3) || die "no python on PATH (DEEPCIS_USE_ACTIVE_ENV=1)"
else
  BASE_PY=${PYTHON:-python3}
  command -v "$BASE_PY" >/dev/null || die "'$BASE_PY' not found: install Python 3.10-3.12 or set PYTHON=/path/to/python"
  if [ ! -x .venv/bin/python ]; then
    "$BASE_PY" - <<'PYEOF' || die "unsupported Python: need 3.10-3.12 for torch 2.13 + mmcv 2.1 (set PYTHON=python3.11)"
import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
PYEOF
    step "create .venv" "$BASE_PY" -m venv .venv
  fi
  PY=$ROOT/.venv/bin/python
fi
"$PY" - <<'PYEOF' || die "unsupported Python $("$PY" -V 2>&1): need 3.10-3.12 (set PYTHON=python3.11)"
import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
PYEOF
PIP=("$PY" -m pip --disable-pip-version-check)

# ---- fast path: nothing changed since the last successful install -------------------------------
STAMP_DIR=$("$PY" -c 'import sys; print(sys.prefix)')
STAMP=$STAMP_DIR/.deepcis-install.stamp
WANT=$(cat requirements.txt requirements/*.txt setup.cfg setup.py scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && \
   "$PY" -c 'import torch, mmcv.ops, mmdet, mmengine, deepcis_mm' >/dev/null 2>&1; then
  echo "install: up to date ($PY)"
  exit 0
fi

# ---- torch: keep an installed one (CUDA clusters bring their own) ------------------------------
if "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "install: keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  step "torch (${DEEPCIS_TORCH:-torch==2.13.0})" "${PIP[@]}" install "${DEEPCIS_TORCH:-torch==2.13.0}"
fi

step "build tools (requirements/build.txt: setuptools, wheel, ninja)" "${PIP[@]}" install -r requirements/build.txt

# ---- mmcv with compiled ops --------------------------------------------------------------------
MMCV_OK='import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0", mmcv.__version__; from mmcv.ops import RoIAlign, batched_nms, ModulatedDeformConv2d'
if "$PY" -c "$MMCV_OK" >/dev/null 2>&1; then
  echo "install: mmcv 2.1.0 with ops already present"
else
  JOBS=${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}
  # Keep our own wheel per torch build so a fresh .venv (or CI clone) on this machine skips the compile.
  TORCH_TAG=$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))' 2>/dev/null)
  WHEELS=${DEEPCIS_WHEEL_CACHE:-$HOME/.cache/deepcis/wheels}/torch-$TORCH_TAG
  if ! ls "$WHEELS"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    echo "install: building mmcv 2.1.0 with ops (MAX_JOBS=$JOBS; ~10-15 min on 2 CPU cores, once per torch build)"
    CXX_BIN=${CXX:-c++}
    command -v "$CXX_BIN" >/dev/null || die "no C++ compiler ('$CXX_BIN' not found): mmcv's ops are compiled from source; install g++ (apt-get install g++) or set CXX"
    "$PY" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
      || die "Python headers (Python.h) missing: install python3-dev for $("$PY" -V 2>&1)"
    mkdir -p "$WHEELS"
    # --no-build-isolation: compile against the torch installed above, not a fresh one from PyPI.
    step "mmcv 2.1.0 build (compiled ops)" env MMCV_WITH_OPS=1 MAX_JOBS="$JOBS" \
      "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WHEELS" -r requirements/mmcv.txt
  fi
  step "mmcv 2.1.0 install (wheel from $WHEELS)" "${PIP[@]}" install "$WHEELS"/mmcv-2.1.0-*.whl mmengine==0.10.7
  "$PY" -c "$MMCV_OK" || die "mmcv installed but its compiled ops do not import"
fi

step "runtime requirements (mmengine, mmdet, pycocotools, numpy, matplotlib)" \
  "${PIP[@]}" install -r requirements/runtime.txt -r requirements/mim-deps.txt -r requirements/tests.txt
step "openmim (without its setuptools-pinning dependency chain)" "${PIP[@]}" install --no-deps -r requirements/mim.txt
step "deepcis_mm (editable)" "${PIP[@]}" install --no-build-isolation --no-deps -e .
# openmim 0.3.9 looks for <site-packages>/deepcis_mm/.mim/{configs,tools}; a PEP 660 editable install
# has no such folder, so link the package there (imports resolve to this checkout either way).
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -e "$SITE/deepcis_mm" ] || [ -L "$SITE/deepcis_mm" ]; then ln -sfn "$ROOT/deepcis_mm" "$SITE/deepcis_mm"; fi
"$PY" -c 'import deepcis_mm' || die "deepcis_mm does not import after install"
echo "$WANT" > "$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
echo "install: done ($PY)"
