#!/usr/bin/env bash
# Distributed training like mmdet's: tools/dist_train.sh CONFIG NPROC [train.py args...]
# NPROC processes on this node (GPUs; on a CPU-only machine CPU processes with gloo).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. Python: $PYTHON, else ./.venv if not in a venv.
set -euo pipefail
CONFIG=$1
NPROC=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
if [ -z "${PYTHON:-}" ]; then
  if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python; fi
fi
PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
