# The NCCL communicator, built with the CUDA backend.
target_sources(torch_handle PRIVATE ${CMAKE_CURRENT_LIST_DIR}/nccl_comm.cpp)
