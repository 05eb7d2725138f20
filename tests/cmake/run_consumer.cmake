# SPDX-License-Identifier: Apache-2.0
# Configures, builds and runs one consumer project in a scratch directory.
# Inputs: MODE, PROJECT_DIR, WORK_DIR, SKETCHSGD_SOURCE_DIR, SKETCHSGD_BINARY_DIR,
# CMAKE_CXX_COMPILER, GENERATOR, for MODE=find_package INSTALL_FROM (a
# configured build tree), and CONSUMER_CUDA_OFF (configure the consumer's
# sketchsgd with SKETCHSGD_ENABLE_CUDA=OFF).

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
  # The README's FetchContent snippet, word for word, but for the repository
  # URL: a file:// URL of a scratch git repository holding the source tree as
  # it is now (uncommitted changes included), on a branch named main.
  file(READ "${SKETCHSGD_SOURCE_DIR}/README.md" readme)
  string(REGEX MATCH "```cmake\n(include\\(FetchContent\\)[^`]*FetchContent_Declare\\([ \t\n]*sketchsgd[^`]*)```" block
               "${readme}")
  set(snippet "${CMAKE_MATCH_1}")
  if(snippet STREQUAL "")
    message(FATAL_ERROR "README.md has no ```cmake block starting with include(FetchContent) that declares sketchsgd")
  endif()
  string(REGEX MATCHALL "GIT_REPOSITORY[ \t]+[^ \t\n)]+" urls "${snippet}")
  list(LENGTH urls url_count)
  if(NOT url_count EQUAL 1)
    message(FATAL_ERROR "README.md's FetchContent snippet names ${url_count} GIT_REPOSITORY URLs, not 1:\n${snippet}")
  endif()

  find_program(GIT git REQUIRED)
  set(repo "${WORK_DIR}/sketchsgd-git")
  # Every file git would commit from the source tree: tracked and untracked
  # but not ignored, less deleted ones and this build tree. Without a git
  # checkout (an unpacked tarball), every file but build*/ and out/.
  execute_process(
    COMMAND ${GIT} -C "${SKETCHSGD_SOURCE_DIR}" ls-files --cached --others --exclude-standard
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE listed
    ERROR_QUIET)
  if(rc EQUAL 0)
    string(REGEX REPLACE "\n$" "" listed "${listed}")
    string(REPLACE "\n" ";" listed "${listed}")
  else()
    file(GLOB_RECURSE listed RELATIVE "${SKETCHSGD_SOURCE_DIR}" "${SKETCHSGD_SOURCE_DIR}/*")
    list(FILTER listed EXCLUDE REGEX "^(build[^/]*|out|\\.git)/")
  endif()
  file(RELATIVE_PATH binary_rel "${SKETCHSGD_SOURCE_DIR}" "${SKETCHSGD_BINARY_DIR}")
  set(files "")
  foreach(f IN LISTS listed)
    if(EXISTS "${SKETCHSGD_SOURCE_DIR}/${f}" AND NOT IS_DIRECTORY "${SKETCHSGD_SOURCE_DIR}/${f}")
      if(binary_rel MATCHES "^\\.\\./" OR NOT f MATCHES "^${binary_rel}/")
        string(APPEND files "${f}\n")
      endif()
    endif()
  endforeach()
  file(WRITE "${WORK_DIR}/files.txt" "${files}")
  set(git_in_repo ${GIT} -C ${SKETCHSGD_SOURCE_DIR} --git-dir=${repo}/.git --work-tree=${SKETCHSGD_SOURCE_DIR} -c user.name=sketchsgd-test
                  -c user.email=test@localhost -c commit.gpgsign=false)
  run(${GIT} init --quiet --initial-branch=main "${repo}")
  run(${git_in_repo} --literal-pathspecs add --force "--pathspec-from-file=${WORK_DIR}/files.txt")
  run(${git_in_repo} commit --quiet --no-verify -m "the source tree under test")

  string(REGEX REPLACE "GIT_REPOSITORY[ \t]+[^ \t\n)]+" "GIT_REPOSITORY file://${repo}" snippet "${snippet}")
  file(WRITE "${WORK_DIR}/readme_fetchcontent.cmake" "${snippet}")
  message(STATUS "README.md's snippet, as the consumer runs it:\n${snippet}")
  list(APPEND extra_args "-DREADME_SNIPPET=${WORK_DIR}/readme_fetchcontent.cmake")
endif()

if(MODE STREQUAL "add_subdirectory")
  list(APPEND extra_args "-DSKETCHSGD_SOURCE_DIR=${SKETCHSGD_SOURCE_DIR}")
endif()
if(CONSUMER_CUDA_OFF AND NOT MODE STREQUAL "find_package")
  list(APPEND extra_args -DSKETCHSGD_ENABLE_CUDA=OFF)
endif()
run(${CMAKE_COMMAND} -S "${PROJECT_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}" -DCMAKE_BUILD_TYPE=Release ${extra_args})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
if(MODE STREQUAL "fetchcontent")
  run("${WORK_DIR}/build/my_trainer") # the README's target name
endif()
