# Messages that name the real problem (issue 15, item 4): sizes refused before allocating, and
# the inputs that used to be reported as something else. (No semicolon in TEXT: CMake would split it.) Each runs through check_deck_error.sh
# (the message once, from rank 0; a non-zero exit; no hang) at 1 and 4 ranks.
if(TARGET torch-handle AND MPIEXEC_EXECUTABLE)
  set(_th_msg_check ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_deck_error.sh)
  set(_th_msg_deck ${CMAKE_CURRENT_SOURCE_DIR}/decks/ok_minimal.nml)
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

  # evaluate / translate on a trained model (the minimal deck, 2 steps, trained by a fixture).
  set(_th_msg_run ${CMAKE_CURRENT_BINARY_DIR}/message_trained)
  add_test(NAME message_fixture_train
           COMMAND bash -c "rm -rf \"$1\" && shift && exec \"$@\"" bash ${_th_msg_run}
                   ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 ${TH_MPIEXEC_FLAGS} $<TARGET_FILE:torch-handle>
                   ${_th_msg_deck} --set "run%output_dir='${_th_msg_run}'" --set run%max_steps=2)
  set_tests_properties(message_fixture_train PROPERTIES FIXTURES_SETUP th_message_trained LABELS "mpi;deck" TIMEOUT 120
                       ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  # th_add_task_message_test(name TEXT ARG...): as above, in the trained run's folder.
  function(th_add_task_message_test name text)
    foreach(np 1 4)
      add_test(NAME message_${name}_np${np}
               COMMAND bash ${_th_msg_check} --expect ${text} ${_th_msg_deck} --set "run%output_dir='${_th_msg_run}'"
                       ${ARGN} -- ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${TH_MPIEXEC_FLAGS}
                       $<TARGET_FILE:torch-handle>)
      set_tests_properties(message_${name}_np${np} PROPERTIES PROCESSORS ${np} LABELS "mpi;deck" TIMEOUT 60
                           FIXTURES_REQUIRED th_message_trained RESOURCE_LOCK th_message_trained
                           ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
    endforeach()
  endfunction()
  # A folder as translate%input_file: an error (it used to translate "0 sentences" and exit 0).
  th_add_task_message_test(translate_input_folder
    "translate%input_file = '${CMAKE_CURRENT_BINARY_DIR}' is a folder"
    --set "run%task='translate'" --set "translate%input_file='${CMAKE_CURRENT_BINARY_DIR}'")
  # A deck whose model differs from the checkpoint: evaluate explains, and does not suggest
  # checkpoint%resume = 'never' (which evaluate rejects).
  th_add_task_message_test(evaluate_other_model
    "the model% keys of the deck must be those of the training run"
    --set "run%task='evaluate'" --set model%d_ff=48)
endif()
