# GPU tests (label gpu): the CUDA kernels against the CPU reference kernels. Built only with the
# CUDA backend. Without a visible GPU the test binary skips its device tests (GTEST_SKIP), and
# the skip regex below makes CTest report the test as skipped rather than passed.
# tests/gpu/run_gpu_checks.sh builds and runs this on a GPU machine and tabulates the errors.
if(TH_HAVE_CUDA)
  add_executable(th_gpu_kernels ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_cuda_kernels.cpp)
  target_link_libraries(th_gpu_kernels PRIVATE th_gtest_main)
  target_compile_options(th_gpu_kernels PRIVATE -Wall -Wextra)
  add_test(NAME gpu_kernels COMMAND th_gpu_kernels)
  set_tests_properties(gpu_kernels PROPERTIES
    LABELS "gpu"
    TIMEOUT 300
    SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
    ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  # The CUDA backend (run%backend = 'cuda') against the CPU backend: training steps of small models.
  add_executable(th_gpu_backend ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_cuda_backend.cpp)
  target_link_libraries(th_gpu_backend PRIVATE th_gtest_main)
  target_compile_options(th_gpu_backend PRIVATE -Wall -Wextra)
  add_test(NAME gpu_backend COMMAND th_gpu_backend)
  set_tests_properties(gpu_backend PROPERTIES
    LABELS "gpu"
    TIMEOUT 300
    SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
    ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
endif()
