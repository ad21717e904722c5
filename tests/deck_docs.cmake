# Until tests/CMakeLists.txt globs tests/cmake/*.cmake (then delete this file).
include(${CMAKE_CURRENT_LIST_DIR}/cmake/deck_docs.cmake)
