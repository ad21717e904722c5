# metrics.h5 survives a crash: the records flushed before it stay readable (h5py).
add_test(NAME metrics_survive_crash
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_metrics_crash.sh $<TARGET_FILE:torch-handle>
                 ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
set_tests_properties(metrics_survive_crash PROPERTIES LABELS "unit" TIMEOUT 180)

# jobs/analysis/plot_metrics.py on a profiled run with periodic validation (h5py + matplotlib).
add_test(NAME analysis_plots
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_analysis.sh $<TARGET_FILE:torch-handle>
                 ${PROJECT_SOURCE_DIR}/inputs/copy_task.nml)
set_tests_properties(analysis_plots PROPERTIES LABELS "unit" TIMEOUT 180)
