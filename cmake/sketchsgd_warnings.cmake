# SPDX-License-Identifier: Apache-2.0
# Warnings for sketchsgd's own targets (tests, examples, benchmarks). Never
# attached to the INTERFACE targets, so nothing leaks into a consumer's flags.

function(sketchsgd_target_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive-)
    if(SKETCHSGD_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  else()
    target_compile_options(
      ${target}
      PRIVATE -Wall
              -Wextra
              -Wpedantic
              -Wshadow
              -Wconversion
              -Wsign-conversion
              -Wold-style-cast
              -Wnon-virtual-dtor
              -Woverloaded-virtual)
    if(SKETCHSGD_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()
endfunction()
