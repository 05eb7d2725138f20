#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The same seeded LibTorch run over 2 in-process workers and over 2 MPI
# processes must end with the same accuracy, loss and bytes: LibTorch runs one
# intra-op thread per worker (deterministic kernels) and sketchsgd's portable
# collectives sum in the same order on every transport.
#   examples/libtorch/same_across_transports.sh TRAINER [trainer flags...]
set -euo pipefail
trainer="${1:?usage: $0 TRAINER [flags]}"
shift
flags=(--quiet "$@")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

result() { grep '^RESULT' | sed 's/ transport=[a-z]*//; s/ seconds=[0-9.]*//'; }
inproc="$("$trainer" --transport inproc --workers 2 "${flags[@]}" | result)"
echo "inproc: $inproc"
mpi="$(mpirun -np 2 --oversubscribe "$trainer" --transport mpi "${flags[@]}" | result)"
echo "mpi:    $mpi"
[ -n "$inproc" ] || { echo "no RESULT line" >&2; exit 1; }
[ "$mpi" = "$inproc" ] || { echo "mpi differs from inproc" >&2; exit 1; }
echo "mpi matches inproc"
