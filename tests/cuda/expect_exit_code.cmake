# SPDX-License-Identifier: Apache-2.0
# Runs PROGRAM (with ARGS, a ;-list) and fails unless it exits with EXPECTED.
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL EXPECTED)
  message(FATAL_ERROR "${PROGRAM} exited with '${rc}', expected ${EXPECTED}\n${out}${err}")
endif()
message(STATUS "${PROGRAM} exited with ${rc} as expected: ${out}")
