#!/usr/bin/env bash
# The whole GPU check in one go, for a short lease of a fresh machine with an NVIDIA GPU.
#
#   bash tools/gpu_lease.sh               # from anywhere in the repository
#
# 1. shows the GPU (nvidia-smi);
# 2. `make setup`: installs requirements.txt into .venv. On Linux x86_64, PyPI's torch==2.13.0
#    (the pin stays as it is) is the CUDA build. A .venv that already holds a CPU-only torch
#    (2.13.0+cpu satisfies the pin) gets torch reinstalled. Needs PyPI, or a wheelhouse through
#    pip's own variables (PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels);
# 3. `make test-gpu`: every notebook with the GPU visible, plus the CUDA fixtures in data/
#    remade with a real torch.save from the GPU and compared (tags, tensors) with the shipped
#    ones; writes build/gpu-report.md (rewritten after each notebook, so a cut-short run
#    still leaves one);
# 4. `data/make_cuda_checkpoint.py --check`: the fixtures' own CPU remake, for comparison;
# 5. copies build/gpu-report.md, this script's log and build/gpu-run/ (the executed
#    notebooks and their logs, as gpu-run.tar.gz) to $OUT when $OUT is set.
#
# Every step has a time limit taken from one budget, GPU_LEASE_SECONDS (default 570), so
# the whole script fits a 10-minute command. GPU_JOBS (default 6) notebooks run at a time.
# GPU_LEASE_SKIP_SETUP=1 skips step 2 (a machine prepared beforehand).
# Exit status: 0 the GPU run passed; 1 it failed or refused (make reports every recipe failure
# as 2, so read the report or the one-line refusal); 4 setup failed; 124 out of time.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 4
START=$(date +%s)
BUDGET=${GPU_LEASE_SECONDS:-570}
JOBS=${GPU_JOBS:-6}
mkdir -p build
rm -rf build/gpu-report.md build/gpu-run  # a report from an earlier run must not pass for this one's
LOG=build/gpu-lease.log
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

left() { echo $((START + BUDGET - $(date +%s))); }
# Seconds a step may take, keeping `reserve` seconds for what follows (never under 10).
limit() { local s=$(( $(left) - $1 )); [ "$s" -lt 10 ] && s=10; echo "$s"; }
step() { echo; echo "== [$(( $(date +%s) - START )) s] $*"; }

collect() {
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        [ -f build/gpu-report.md ] && cp build/gpu-report.md "$OUT/"
        [ -d build/gpu-run ] && tar -czf "$OUT/gpu-run.tar.gz" build/gpu-run 2>/dev/null
        sleep 1  # let tee flush the log before it is copied
        cp "$LOG" "$OUT/"
    fi
}

finish() {
    local status=$1
    step "done, status $status"
    if [ -f build/gpu-report.md ]; then
        # The summary last, so it is what a truncated output tail still shows.
        sed -n '1,/^## CUDA fixtures/p' build/gpu-report.md | sed '$d'
        sed -n '/^## CUDA fixtures/,/^## What the GPU/p' build/gpu-report.md | sed '$d'
    fi
    collect
    exit "$status"
}

step "GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv || true
else
    echo "nvidia-smi not found (make test-gpu will say whether torch sees a GPU)"
fi

PY=.venv/bin/python
if [ "${GPU_LEASE_SKIP_SETUP:-0}" = 1 ]; then
    step "make setup skipped (GPU_LEASE_SKIP_SETUP=1)"
else
    step "make setup (at most $(limit 150) s)"
    if [ -x "$PY" ] && "$PY" -c 'import sys, torch; sys.exit(torch.version.cuda is not None)' 2>/dev/null; then
        echo ".venv holds a CPU-only torch: reinstalling torch==2.13.0 (CUDA build) first"
        timeout "$(limit 150)" "$PY" -m pip install --quiet --force-reinstall torch==2.13.0 || finish 4
    fi
    timeout "$(limit 150)" make setup || { echo "make setup failed (no network? see $LOG)"; finish 4; }
fi
"$PY" - <<'EOF' || finish 4
import torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| GPU visible:", torch.cuda.is_available())
EOF

step "make test-gpu (at most $(limit 25) s, $JOBS notebooks at a time)"
if grep -q '^test-gpu:' Makefile; then
    timeout --kill-after=10 "$(limit 25)" make test-gpu GPU_JOBS="$JOBS"
else  # the target is not in this Makefile yet: what it runs
    OMP_NUM_THREADS=1 PYTHONHASHSEED=0 JUPYTER_PLATFORM_DIRS=1 \
        timeout --kill-after=10 "$(limit 25)" "$PY" -m tools.gpu_run --jobs "$JOBS"
fi
case $? in
    0) STATUS=0 ;;
    124|137) STATUS=124; echo "make test-gpu ran out of time: the report holds what finished" ;;
    *) STATUS=1 ;;
esac

step "the fixtures' CPU remake (data/make_cuda_checkpoint.py --check)"
timeout 20 "$PY" data/make_cuda_checkpoint.py --check || echo "data/make_cuda_checkpoint.py --check failed"

if [ -f build/gpu-report.md ]; then
    step "build/gpu-report.md"
    cat build/gpu-report.md
fi
finish "$STATUS"
