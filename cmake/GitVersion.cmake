# The git sha printed in the run banner and written into checkpoints and datasets
# (th::git_sha(), th/core/version.hpp). TH_GIT_SHA is the configure-time value, for the
# configuration summary only; the binaries take theirs from TH_GIT_SHA_CPP, which the th_git_sha
# target refreshes at every build (cmake/WriteGitSha.cmake), so a commit made after configuring
# is not reported as the one before.
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                OUTPUT_VARIABLE TH_GIT_SHA OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT TH_GIT_SHA)
  set(TH_GIT_SHA unknown)
endif()
set(TH_GIT_SHA_CPP ${PROJECT_BINARY_DIR}/generated/git_sha.cpp)
set(_th_git_sha_args -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DOUT=${TH_GIT_SHA_CPP} -P
                     ${CMAKE_CURRENT_LIST_DIR}/WriteGitSha.cmake)
file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/generated)
execute_process(COMMAND ${CMAKE_COMMAND} ${_th_git_sha_args})
add_custom_target(th_git_sha COMMAND ${CMAKE_COMMAND} ${_th_git_sha_args} BYPRODUCTS ${TH_GIT_SHA_CPP} VERBATIM)
