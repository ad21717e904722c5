# The training-loop profiler (Chrome/Perfetto traces and the end-of-window summary).
target_sources(torch_handle PRIVATE ${CMAKE_CURRENT_LIST_DIR}/profiler.cpp)
