# The GEMM engine's test again on the slowest paths every x86-64 CPU has: oneDNN capped at SSE4.1
# (no bf16 matmul there: the fallback runs) and OpenBLAS forced to its Prescott kernels.
include_guard(GLOBAL)
if(TARGET th_test_gemm_engine)
  add_test(NAME unit_test_gemm_engine_sse41_prescott COMMAND th_test_gemm_engine)
  set_tests_properties(unit_test_gemm_engine_sse41_prescott PROPERTIES LABELS "unit" TIMEOUT 300
                       ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1;ONEDNN_MAX_CPU_ISA=SSE41;OPENBLAS_CORETYPE=Prescott")
endif()
