# SPDX-License-Identifier: Apache-2.0
# Shared by the consumer projects: the program, strict flags of the
# consumer's own, and a check that sketchsgd adds no compile options.

add_executable(consumer "${CMAKE_CURRENT_LIST_DIR}/consumer.cpp")
target_link_libraries(consumer PRIVATE sketchsgd::sketchsgd)
target_compile_options(consumer PRIVATE -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow -Werror)

get_target_property(leaked sketchsgd::sketchsgd INTERFACE_COMPILE_OPTIONS)
if(leaked)
  message(FATAL_ERROR "sketchsgd::sketchsgd leaks compile options into consumers: ${leaked}")
endif()
