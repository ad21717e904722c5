# task = 'plan' end to end (tests/scripts/check_plan.sh): the GPT-3 175B deck on the H200 description and
# the plot script (one rank), calibration on this machine and a plan from its file (1, 2, 4
# ranks: rank 0 computes, nobody hangs), a bad machine file (1 and 4 ranks).
if(TARGET torch-handle AND MPIEXEC_EXECUTABLE)
  set(_th_plan ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_plan.sh)
  function(th_add_plan_test name mode np)
    add_test(NAME ${name}_np${np}
             COMMAND bash ${_th_plan} ${mode} ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${TH_MPIEXEC_FLAGS}
                     $<TARGET_FILE:torch-handle>)
    set_tests_properties(${name}_np${np} PROPERTIES PROCESSORS ${np} LABELS "mpi" TIMEOUT 300
                         ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  endfunction()
  th_add_plan_test(plan_gpt3 gpt3 1)
  foreach(np 1 2 4)
    th_add_plan_test(plan_calibrate calibrate ${np})
  endforeach()
  th_add_plan_test(plan_bad_machine bad-machine 1)
  th_add_plan_test(plan_bad_machine bad-machine 4)
endif()
