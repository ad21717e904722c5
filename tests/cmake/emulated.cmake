# The emulated device (run%backend = 'emulated', th/backend/emulated.hpp) trains exactly as the CPU
# backend on 2 ranks (ZeRO 0-3, fp32/bf16/fp16, optimizer and parameter offload to host and NVMe; a packed, document-masked LM with
# learned positions, dropout and activation checkpointing), its checkpoints resume on the
# CPU backend and back, and it catches a forgotten copy, a forgotten synchronisation and a
# forgotten ordering of the copy stream against the compute stream
# (tests/scripts/check_emulated.sh). Kernel-level checks: tests/unit/test_emulated.cpp and
# test_backend.cpp.
include_guard(GLOBAL)
foreach(scenario stage0_fp32 stage1_bf16 stage2_fp16 stage3_fp32 stage3_bf16 offload_opt offload_param offload_nvme lm evaluate resume skip_copy skip_wait skip_stream_wait)
  add_test(NAME emulated_${scenario}
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/../scripts/check_emulated.sh ${scenario} ${MPIEXEC_EXECUTABLE}
                   ${MPIEXEC_NUMPROC_FLAG} ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle>
                   ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml ${CMAKE_CURRENT_LIST_DIR}/../data/genesis_1-4_en_es.tsv)
  set_tests_properties(emulated_${scenario} PROPERTIES LABELS "mpi" PROCESSORS 2 TIMEOUT 400)
endforeach()
