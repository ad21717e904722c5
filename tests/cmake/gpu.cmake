# GPU tests (label gpu): the CUDA kernels against the CPU reference kernels. Built only with the
# CUDA backend. Without a visible GPU the test binary skips its device tests (GTEST_SKIP), and
# the skip regex below makes CTest report the test as skipped rather than passed.
# tests/gpu/run_gpu_checks.sh builds and runs this on a GPU machine and tabulates the errors.
# gpu_backend: the CUDA backend (run%backend = 'cuda') against the CPU backend, training steps of
# small models (tests/gpu/test_cuda_backend.cpp).
if(TH_HAVE_CUDA)
  foreach(pair "kernels;test_cuda_kernels" "backend;test_cuda_backend")
    list(GET pair 0 name)
    list(GET pair 1 source)
    add_executable(th_gpu_${name} ${CMAKE_CURRENT_SOURCE_DIR}/gpu/${source}.cpp)
    target_link_libraries(th_gpu_${name} PRIVATE th_gtest_main)
    target_compile_options(th_gpu_${name} PRIVATE -Wall -Wextra)
    add_test(NAME gpu_${name} COMMAND th_gpu_${name})
    set_tests_properties(gpu_${name} PROPERTIES
      LABELS "gpu"
      TIMEOUT 300
      SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
      ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  endforeach()
endif()
