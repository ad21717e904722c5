# One error path (issue 15): an exception on one rank, wherever it happens while the job reads a
# real dataset (reader start-up, a prefetched read mid-epoch, a checkpoint save, evaluation,
# validation, an input error raised by one rank alone) or a corrupt token in the training file,
# ends the job with that rank's message, non-zero, within 10 s of the failure
# (tests/scripts/check_rank_failure.sh), on 2 and 4 ranks.
foreach(scenario open read save evaluate evalopen validate input badtoken negtoken)
  foreach(np 2 4)
    add_test(NAME rank_failure_${scenario}_np${np}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_rank_failure.sh ${scenario} ${np} ${MPIEXEC_EXECUTABLE}
                     ${MPIEXEC_NUMPROC_FLAG} ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle>
                     ${CMAKE_CURRENT_SOURCE_DIR}/data/genesis_1-4_en_es.tsv)
    set_tests_properties(rank_failure_${scenario}_np${np} PROPERTIES LABELS "mpi" PROCESSORS ${np} TIMEOUT 400)
  endforeach()
endforeach()
