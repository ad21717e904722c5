# Data tests (issue 4). The parallel-reader round trip also runs at 3 ranks (the MPI tests run at
# 1, 2 and 4 by default): an odd count leaves ranks with unequal shares.
add_mpi_test(test_data_reader th_test_data_reader 3)
