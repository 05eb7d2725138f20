# SPDX-License-Identifier: Apache-2.0
# A compile-fail test: SOURCE must compile with -DSKETCHSGD_WITH_HOOK (so the
# hook is all it lacks) and fail without it, with a diagnostic matching
# MESSAGE (a regular expression over the compiler's whole output).
#   cmake -DCOMPILER=c++ -DFLAGS="-std=c++20" -DINCLUDE=dir -DSOURCE=file.cpp -DMESSAGE=regex
#         -P expect_compile_error.cmake
separate_arguments(flags UNIX_COMMAND "${FLAGS}")
set(compile ${COMPILER} ${flags} -fsyntax-only -I${INCLUDE} ${SOURCE})
execute_process(COMMAND ${compile} -DSKETCHSGD_WITH_HOOK RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} with its hook does not compile, so the test proves nothing:\n${out}${err}")
endif()
execute_process(COMMAND ${compile} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiles without its hook: the policy was not refused")
endif()
if(NOT "${out}${err}" MATCHES "${MESSAGE}")
  message(FATAL_ERROR "${SOURCE} was refused, but its diagnostic does not match '${MESSAGE}':\n${out}${err}")
endif()
message(STATUS "${SOURCE} refused as expected")
