#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The same seeded training run over inproc threads, TCP processes and MPI
# processes must end with the same test accuracy, loss and bytes: the
# optimizers are deterministic and the portable collectives sum in the same
# order on every transport.
#   examples/fashion_mnist/same_across_transports.sh BUILD_DIR [trainer flags...]
set -euo pipefail
build="${1:?usage: $0 BUILD_DIR [flags]}"
shift
here="$(cd "$(dirname "$0")/../.." && pwd)"
trainer="$build/examples/fashion_mnist/fashion_mnist"
flags=(--workers 4 --quiet "$@")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

result() { grep '^RESULT' | sed 's/ transport=[a-z]*//; s/ seconds=[0-9.]*//'; }
inproc="$("$trainer" --transport inproc "${flags[@]}" | result)"
echo "inproc: $inproc"
status=0
if "$trainer" --transport tcp --help >/dev/null 2>&1 && [ -n "$(command -v bash)" ]; then
  tcp="$(bash "$here/scripts/tcp_launch.sh" -n 4 --timeout 600 -- "$trainer" --transport tcp "${flags[@]}" | result)"
  echo "tcp:    $tcp"
  [ "$tcp" = "$inproc" ] || { echo "tcp differs from inproc" >&2; status=1; }
fi
if command -v mpiexec >/dev/null 2>&1; then
  mpi="$(mpiexec -n 4 --oversubscribe "$trainer" --transport mpi "${flags[@]}" | result)"
  echo "mpi:    $mpi"
  [ "$mpi" = "$inproc" ] || { echo "mpi differs from inproc" >&2; status=1; }
fi
exit $status
