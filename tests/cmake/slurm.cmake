# A real Slurm (issue 11): tests/slurm/run_slurm_test.sh starts a one-node Slurm on localhost
# (munged, slurmctld, slurmd from Debian's packages, everything in a temp folder, stopped by pid
# on exit) and submits each jobs/slurm/*.sbatch script with a tiny copy-task deck, including a
# preemption (SIGUSR1) + requeue + resume and a chained --dependency=afterany job. About a minute.
# Needs root: reported as Skipped otherwise (exit 77). Daemons that do not start are a failure.
if(TARGET torch-handle)
  add_test(NAME slurm_jobs
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/run_slurm_test.sh ${PROJECT_SOURCE_DIR}
                   $<TARGET_FILE:torch-handle>)
  # RUN_SERIAL: the jobs use both cores of this machine; 2 ranks x 1 cpu per job.
  set_tests_properties(slurm_jobs PROPERTIES LABELS "slurm" TIMEOUT 300 SKIP_RETURN_CODE 77
                       PROCESSORS 2 RUN_SERIAL TRUE ENVIRONMENT "TH_SLURM_TEST_LIMIT=240")
endif()
