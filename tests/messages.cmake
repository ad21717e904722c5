# Messages that name the real problem (issue 15, item 4): sizes refused before allocating, and
# the inputs that used to be reported as something else. (No semicolon in TEXT: CMake would split it.) Each runs through check_deck_error.sh
# (the message once, from rank 0; a non-zero exit; no hang) at 1 and 4 ranks.
if(TARGET torch-handle AND MPIEXEC_EXECUTABLE)
  set(_th_msg_check ${CMAKE_CURRENT_LIST_DIR}/check_deck_error.sh)
  set(_th_msg_deck ${CMAKE_CURRENT_LIST_DIR}/decks/ok_minimal.nml)
  # th_add_message_test(name TEXT ARG...): the minimal deck with ARG... must fail with TEXT.
  function(th_add_message_test name text)
    foreach(np 1 4)
      add_test(NAME message_${name}_np${np}
               COMMAND bash ${_th_msg_check} --expect ${text} ${_th_msg_deck} ${ARGN}
                       --set "run%output_dir='${CMAKE_CURRENT_BINARY_DIR}/message_${name}_np${np}'" --
                       ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${TH_MPIEXEC_FLAGS}
                       $<TARGET_FILE:torch-handle>)
      set_tests_properties(message_${name}_np${np} PROPERTIES PROCESSORS ${np} LABELS "mpi;deck"
                           TIMEOUT 60 ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
    endforeach()
  endfunction()

  # Sizes that cannot fit: the key, the bytes needed, the bytes available; nothing allocated.
  th_add_message_test(huge_synthetic_samples
    "data%synthetic_samples = 2000000000: the synthetic sets (2000000000 + 256 examples of at least 4 tokens) need at least 1.76e+11 bytes"
    --set data%synthetic_samples=2000000000)
  th_add_message_test(huge_d_model
    "the model of model%d_model = 100000000, model%d_ff = 64, 1 encoder + 1 decoder layers and a vocabulary of 32 (1.2e+17 parameters"
    --set model%d_model=100000000)
endif()
