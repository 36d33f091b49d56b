#!/bin/bash
# Per-rank GPU selection on ALCF Polaris (4 A100 per node), placed between
# mpiexec and the program:  mpiexec ... set_affinity_gpu_polaris.sh python -m mpiwf run ...
#
# Cray MPICH on Polaris does not bind ranks to GPUs, so, as ALCF documents in
# "Using GPUs on Polaris Compute Nodes" -> "Binding MPI ranks to GPUs", a
# small wrapper sets CUDA_VISIBLE_DEVICES from the node-local rank
# PMI_LOCAL_RANK and then execs the program.
#
# ALCF's example assigns gpu = 3 - (PMI_LOCAL_RANK % 4), "in reverse order due
# to topology": GPU 3 sits next to cores 0-7, GPU 2 to 8-15, GPU 1 to 16-23
# and GPU 0 to 24-31. With more than 4 ranks per node bound in core order
# (mpiexec --cpu-bind depth), this script hands out GPUs in blocks instead of
# round-robin, so each rank gets the GPU nearest its core; with 4 ranks per
# node both rules give the same answer.
set -euo pipefail

num_gpus=4
local_rank="${PMI_LOCAL_RANK:?PMI_LOCAL_RANK is not set; launch this script with mpiexec}"
# Ranks on this node: set by the launcher; RANKS_PER_NODE is the job
# script's value, exported as a fallback.
local_size="${PMI_LOCAL_SIZE:-${RANKS_PER_NODE:-$num_gpus}}"

gpu=$(( num_gpus - 1 - (local_rank * num_gpus / local_size) ))
if (( gpu < 0 )); then
    gpu=0
fi
export CUDA_VISIBLE_DEVICES="$gpu"
exec "$@"
