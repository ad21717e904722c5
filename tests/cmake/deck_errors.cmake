# Bad decks under MPI: each must stop the job before any work, with its message printed once
# (rank 0), a non-zero exit and no rank left hanging, at 1 and 4 ranks. Each tests/decks/bad_*.nml
# names its expected message on its first line ("! expect: ..."); check_deck_error.sh reports the
# elapsed time (target: within 2 s) and fails on a hang (20 s).
if(TARGET torch-handle AND MPIEXEC_EXECUTABLE)
  set(_th_check ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_deck_error.sh)
  set(_th_ok_deck ${CMAKE_CURRENT_SOURCE_DIR}/decks/ok_minimal.nml)
  file(GLOB _th_bad_decks CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/decks/bad_*.nml)

  # th_add_deck_error_test(name [--expect TEXT] DECK [ARG...]): at 1 and 4 ranks.
  function(th_add_deck_error_test name)
    foreach(np 1 4)
      add_test(NAME deck_${name}_np${np}
               COMMAND bash ${_th_check} ${ARGN} --
                       ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${TH_MPIEXEC_FLAGS}
                       $<TARGET_FILE:torch-handle>)
      set_tests_properties(deck_${name}_np${np} PROPERTIES PROCESSORS ${np} LABELS "mpi;deck"
                           TIMEOUT 60 ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
    endforeach()
  endfunction()

  foreach(deck ${_th_bad_decks})
    get_filename_component(stem ${deck} NAME_WE)
    string(REGEX REPLACE "^bad_" "" stem ${stem})
    th_add_deck_error_test(${stem} ${deck})
  endforeach()

  th_add_deck_error_test(missing_file
    --expect "no_such_deck.nml: cannot open deck: No such file or directory"
    ${CMAKE_CURRENT_BINARY_DIR}/no_such_deck.nml)
  # A valid deck broken on the command line: the --set plumbing of main.
  th_add_deck_error_test(bad_override
    --expect "--set parallel%zero_stage=7: 'parallel%zero_stage' = 7 is out of range (0 to 3)"
    ${_th_ok_deck} --set parallel%zero_stage=7)
endif()
