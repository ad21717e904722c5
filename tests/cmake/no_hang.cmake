# No hang on a bad rank: one rank throws (or dies) mid-training; the job must stop with a
# non-zero status, the thrower's message naming its rank, within the time limit.
foreach(kind throw exit)
  add_test(NAME no_hang_rank1_${kind}_np3
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_no_hang.sh ${kind} ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 3
                   ${TH_MPIEXEC_FLAGS} $<TARGET_FILE:torch-handle> ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
  set_tests_properties(no_hang_rank1_${kind}_np3 PROPERTIES LABELS "mpi" PROCESSORS 3 TIMEOUT 120)
endforeach()

# kill -9 of a rank while a checkpoint is being written: the previous checkpoint stays the valid
# one and the rerun continues bit for bit (tests/scripts/check_kill_during_save.sh).
add_test(NAME kill_during_save
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_kill_during_save.sh ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                 ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle> ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
set_tests_properties(kill_during_save PROPERTIES LABELS "mpi" TIMEOUT 300)
