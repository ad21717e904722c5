# Checkpoints and run folders that cannot lie or collide, signals (issue 15, items 3 and 4).

# A save without room: "no space left on device" with the file and the bytes needed, no partial
# .tmp, the previous checkpoint kept. 'tmpfs' uses a real full file system (a 5 MiB tmpfs in a
# private mount namespace; skipped where mounting is not permitted), 'injected' a TH_FAULT switch.
foreach(mode tmpfs injected)
  add_test(NAME checkpoint_no_space_${mode}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_checkpoint_space.sh ${mode} ${MPIEXEC_EXECUTABLE}
                   ${MPIEXEC_NUMPROC_FLAG} ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle>
                   ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
  set_tests_properties(checkpoint_no_space_${mode} PROPERTIES LABELS "mpi" PROCESSORS 2 TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endforeach()

# One run per output folder: a second job on a live run's folder stops at once naming the holder;
# evaluate may run there; a clean stop releases the lock; a crashed run's stale lock is taken over.
add_test(NAME run_folder_lock
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_run_lock.sh ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                 ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle> ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
set_tests_properties(run_folder_lock PROPERTIES LABELS "mpi" PROCESSORS 2 TIMEOUT 600)

# Signals (docs/running.md, "Signals"): SIGUSR1 during start-up kills no rank; SIGTERM to mpirun
# with Open MPI's default grace and with a longer one; SIGINT (Ctrl-C) to a rank run alone.
foreach(case usr1_startup term_default term_grace int_singleton)
  add_test(NAME signal_${case}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_signals.sh ${case} ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}
                   ${TH_MPIEXEC_FLAGS} -- $<TARGET_FILE:torch-handle> ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
  set_tests_properties(signal_${case} PROPERTIES LABELS "mpi" PROCESSORS 2 TIMEOUT 300)
endforeach()
