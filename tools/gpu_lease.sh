#!/usr/bin/env bash
# The GPU check in one go, for a short lease of a fresh machine with an NVIDIA GPU:
#
#   bash tools/gpu_lease.sh
#
# shows the GPU, runs `make setup` (a .venv holding a CPU-only torch gets the CUDA build of
# torch==2.13.0 first), then `make test-gpu` (every notebook with the GPU visible, the CUDA
# fixtures of data/ remade and compared; build/gpu-report.md), and copies the report, the
# executed notebooks and this log to $OUT when $OUT is set. GPU_LEASE_SECONDS (default 570)
# bounds the whole run, so it fits a 10-minute command; GPU_JOBS (default 6) notebooks run at
# a time. Exit status: make test-gpu's (0 pass, 2 failed), 4 setup failed, 124 out of time.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 4
END=$(($(date +%s) + ${GPU_LEASE_SECONDS:-570}))
left() { echo $((END - $(date +%s) - $1)); }
mkdir -p build && rm -rf build/gpu-report.md build/gpu-run
exec > >(tee build/gpu-lease.log) 2>&1

collect() {
    echo "== done, status $1"
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        cp build/gpu-report.md "$OUT/" 2>/dev/null
        tar -czf "$OUT/gpu-run.tar.gz" build/gpu-run 2>/dev/null
        sleep 1 && cp build/gpu-lease.log "$OUT/"
    fi
    exit "$1"
}

echo "== GPU"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv 2>/dev/null ||
    echo "nvidia-smi not found (make test-gpu will say whether torch sees a GPU)"

echo "== make setup"
PY=.venv/bin/python
if [ -x "$PY" ] && "$PY" -c 'import sys, torch; sys.exit(torch.version.cuda is not None)' 2>/dev/null; then
    timeout "$(left 300)" "$PY" -m pip install -q --force-reinstall torch==2.13.0 || collect 4
fi
timeout "$(left 300)" make setup || collect 4

echo "== make test-gpu"
timeout --kill-after=10 "$(left 20)" make test-gpu GPU_JOBS="${GPU_JOBS:-6}"
STATUS=$?
[ -f build/gpu-report.md ] && cat build/gpu-report.md
collect "$STATUS"
