# The git sha printed in the run banner (configure-time; "unknown" outside a git checkout).
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                OUTPUT_VARIABLE TH_GIT_SHA OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT TH_GIT_SHA)
  set(TH_GIT_SHA unknown)
endif()
