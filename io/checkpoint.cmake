# Checkpoints (issue 7): collective HDF5 checkpoint files, resume, resharding; the checkpoint
# folder's checks and the one-run-per-folder lock (issue 15).
# Included once from the library's CMake (include(${PROJECT_SOURCE_DIR}/io/checkpoint.cmake)).
include_guard(GLOBAL)
target_sources(torch_handle PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_pieces.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_files.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_save.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_load.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_h5.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_state_crc.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_dir.cpp
  ${CMAKE_CURRENT_LIST_DIR}/run_lock.cpp
)
# zlib's crc32_z/crc32_combine: the per-dataset CRC-32 is the one Python's zlib.crc32 computes,
# and pieces hashed on different ranks are combined without moving data.
find_package(ZLIB REQUIRED)
target_link_libraries(torch_handle PRIVATE ZLIB::ZLIB)
