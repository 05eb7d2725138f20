// SPDX-License-Identifier: Apache-2.0
// The core umbrella header must never pull in MPI, Boost or CUDA: a CPU-only
// user sees only the standard library and the POSIX file calls of
// optim/state/checkpoint.hpp. Checked at compile time.

#include "sketchsgd/sketchsgd.hpp"

#if defined(MPI_VERSION) || defined(OMPI_MAJOR_VERSION)
#error "sketchsgd/sketchsgd.hpp must not include mpi.h"
#endif
#if defined(BOOST_VERSION)
#error "sketchsgd/sketchsgd.hpp must not include Boost"
#endif
#if defined(__CUDA_RUNTIME_H__) || defined(CUDART_VERSION)
#error "sketchsgd/sketchsgd.hpp must not include the CUDA runtime"
#endif
