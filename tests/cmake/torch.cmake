# PyTorch parity (label torch): needs Debian's python3-torch and python3-h5py, which
# tests/run.sh installs. The interpreter is the system one, not a virtualenv's.
find_program(TH_PYTHON_TORCH NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
add_executable(th_test_torch_parity ${CMAKE_CURRENT_SOURCE_DIR}/torch/test_torch_parity.cpp)
target_link_libraries(th_test_torch_parity PRIVATE th_gtest_main)
target_compile_definitions(th_test_torch_parity PRIVATE TH_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}"
                           TH_PYTHON="${TH_PYTHON_TORCH}")
add_test(NAME torch_parity COMMAND th_test_torch_parity)
set_tests_properties(torch_parity PROPERTIES LABELS "torch" TIMEOUT 600
                     ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
