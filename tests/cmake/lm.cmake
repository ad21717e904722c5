# Language models end to end (issue 20): prepare from text on 1 and 3 ranks, train packed blocks
# with the document mask on 2 ranks (validation perplexity falls), evaluate, generate on 1 and 3
# ranks with the same text.
add_test(NAME lm_end_to_end
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_lm.sh ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                 ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle> ${CMAKE_CURRENT_SOURCE_DIR}/data/genesis_1-4_en_es.tsv)
set_tests_properties(lm_end_to_end PROPERTIES LABELS "mpi" TIMEOUT 900)
