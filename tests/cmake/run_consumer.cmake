# SPDX-License-Identifier: Apache-2.0
# Configures, builds and runs one consumer project in a scratch directory.
# Inputs: MODE, PROJECT_DIR, WORK_DIR, SKETCHSGD_SOURCE_DIR, CMAKE_CXX_COMPILER,
# GENERATOR, and for MODE=find_package INSTALL_FROM (a configured build tree).

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "consumer (${MODE}) failed with ${rc}: ${cmd}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(extra_args "")
if(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  run(${CMAKE_COMMAND} --install "${INSTALL_FROM}" --prefix "${prefix}")
  list(APPEND extra_args "-DCMAKE_PREFIX_PATH=${prefix}")
endif()

if(MODE STREQUAL "fetchcontent")
  # What a release tarball holds: the build files and the headers. (Copying
  # the source directory itself would recurse into this build tree.)
  set(parts CMakeLists.txt cmake include)
  foreach(optional_part IN ITEMS transports cuda)
    if(EXISTS "${SKETCHSGD_SOURCE_DIR}/${optional_part}")
      list(APPEND parts ${optional_part})
    endif()
  endforeach()
  set(archive "${WORK_DIR}/sketchsgd-src.tar.gz")
  execute_process(COMMAND ${CMAKE_COMMAND} -E tar czf "${archive}" ${parts} WORKING_DIRECTORY "${SKETCHSGD_SOURCE_DIR}"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "could not pack the source tree")
  endif()
  list(APPEND extra_args "-DSKETCHSGD_ARCHIVE=${archive}")
endif()

run(${CMAKE_COMMAND} -S "${PROJECT_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}" "-DSKETCHSGD_SOURCE_DIR=${SKETCHSGD_SOURCE_DIR}"
    -DCMAKE_BUILD_TYPE=Release ${extra_args})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
