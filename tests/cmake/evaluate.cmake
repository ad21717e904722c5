# task='evaluate' and task='translate' end to end on the copy task (1 and 3 ranks agree, input
# order kept, BLEU > 90, clear error without a checkpoint).
add_test(NAME evaluate_translate
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_evaluate.sh ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                 ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle> ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
set_tests_properties(evaluate_translate PROPERTIES LABELS "mpi" TIMEOUT 600)
