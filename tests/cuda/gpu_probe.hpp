// SPDX-License-Identifier: Apache-2.0
#pragma once

// Whether this process can run the CUDA tests. Without a usable GPU (no
// driver, no device, a device too old for the compiled code) the GPU test
// programs exit with `skip_return_code`, which ctest reports as skipped.

#include <cuda_runtime.h>

#include <string>

namespace sketchsgd::test {

/// ctest's SKIP_RETURN_CODE of the GPU tests.
inline constexpr int skip_return_code = 77;

/// Empty when a GPU of compute capability 8.0 or newer (what the tests are
/// compiled for: sm_90 code, compute_80 PTX) is usable; otherwise why not.
/// Any CUDA error here means "no GPU", never a test failure.
inline std::string cuda_unavailable_reason() {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  if (count == 0) return "no CUDA device is visible";
  int major = 0;
  e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (e != cudaSuccess) return std::string("cudaDeviceGetAttribute: ") + cudaGetErrorName(e);
  if (major < 8) return "device 0 has compute capability " + std::to_string(major) + ".x; the tests need 8.0+";
  e = cudaFree(nullptr);  // creates the context: fails on prohibited or broken devices
  if (e != cudaSuccess) return std::string("creating a CUDA context: ") + cudaGetErrorName(e);
  return {};
}

}  // namespace sketchsgd::test
