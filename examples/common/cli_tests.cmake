# SPDX-License-Identifier: Apache-2.0
# cli_refusal_test(NAME PROGRAM MESSAGE ARGS...): a ctest entry that runs
# PROGRAM (a target or a path) with ARGS and passes only if it exits with
# cli::usage_exit_code and prints a message matching MESSAGE (a regular
# expression) on stderr, reporting no result (expect_refusal.cmake).
set(CLI_EXPECT_REFUSAL "${CMAKE_CURRENT_LIST_DIR}/expect_refusal.cmake")

function(cli_refusal_test name program message)
  if(TARGET ${program})
    set(program "$<TARGET_FILE:${program}>")
  endif()
  add_test(NAME ${name} COMMAND "${CMAKE_COMMAND}" "-DMESSAGE=${message}" -P "${CLI_EXPECT_REFUSAL}" -- "${program}"
                                ${ARGN})
  set_tests_properties(${name} PROPERTIES TIMEOUT 60 LABELS cli)
endfunction()
