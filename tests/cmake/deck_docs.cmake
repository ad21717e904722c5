# docs/deck.md's key tables are generated from include/th/config/deck_keys.def; deck_docs fails when
# they disagree and prints the command that regenerates them.
include_guard(GLOBAL)
if(TARGET torch-handle AND MPIEXEC_EXECUTABLE)
  add_test(NAME deck_docs
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/../scripts/check_deck_docs.sh ${PROJECT_SOURCE_DIR}/docs/deck.md --
                   ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 ${TH_MPIEXEC_FLAGS}
                   $<TARGET_FILE:torch-handle>)
  set_tests_properties(deck_docs PROPERTIES LABELS "deck" TIMEOUT 60
                       ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
endif()
