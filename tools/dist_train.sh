#!/usr/bin/env bash
# Distributed training with torchrun: one process per device (CPU processes
# use gloo when no GPU is present, see mmstop/compat.py).
#
#   bash tools/dist_train.sh CONFIG NPROC [train.py options...]
#
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (as in MMAction2).
# PYTHON selects the interpreter (default: python).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [train.py options...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
