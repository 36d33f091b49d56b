#!/bin/bash
# Per-rank GPU-tile selection on ALCF Aurora (2 sockets x 3 Intel PVC GPUs,
# 2 tiles each), placed between mpiexec and the program:
#   mpiexec ... set_affinity_gpu_aurora.sh python -m mpiwf run ...
#
# Follows ALCF's gpu_tile_compact.sh ("Running Jobs on Aurora" -> "Binding
# MPI ranks to GPUs"): ZE_AFFINITY_MASK=<gpu>.<tile> per rank, from the
# node-local rank PALS_LOCAL_RANKID, with ZE_ENABLE_PCI_ID_DEVICE_ORDER=1.
# The <gpu>.<tile> form needs ZE_FLAT_DEVICE_HIERARCHY=COMPOSITE, which ALCF
# documents as the Aurora PE default (the `frameworks` module sets FLAT).
#
# gpu_tile_compact.sh maps local rank r to tile r (12 ranks, 12 tiles). With
# more ranks per node, aurora.pbs puts the first half of the local ranks on
# socket 0 and the second half on socket 1, so this script gives each half
# the 6 tiles of its own socket (GPUs 0-2 and 3-5), in blocks.
#
# Note: Level Zero reads ZE_AFFINITY_MASK; CuPy does not run on Intel GPUs,
# so this only matters for tasks that use Level Zero/SYCL (e.g. executables
# or dpnp code). mpiwf's CPU kernels are unaffected.
set -euo pipefail

gpus_per_socket=3
num_tile=2
local_rank="${PALS_LOCAL_RANKID:?PALS_LOCAL_RANKID is not set; launch this script with mpiexec}"
# Ranks on this node: set by the launcher; RANKS_PER_NODE is the job
# script's value, exported as a fallback.
local_size="${PALS_LOCAL_SIZE:-${RANKS_PER_NODE:-$(( 2 * gpus_per_socket * num_tile ))}}"

tiles_per_socket=$(( gpus_per_socket * num_tile ))
half=$(( local_size / 2 ))
if (( half < 1 )); then
    socket=0
    slot=0
else
    socket=$(( local_rank / half ))
    if (( socket > 1 )); then
        socket=1
    fi
    slot=$(( (local_rank - socket * half) * tiles_per_socket / half ))
    if (( slot >= tiles_per_socket )); then
        slot=$(( tiles_per_socket - 1 ))
    fi
fi
gpu_id=$(( socket * gpus_per_socket + slot / num_tile ))
tile_id=$(( slot % num_tile ))

export ZE_ENABLE_PCI_ID_DEVICE_ORDER=1
export ZE_AFFINITY_MASK="${gpu_id}.${tile_id}"
exec "$@"
