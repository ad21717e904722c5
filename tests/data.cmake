# Data tests (issue 4). The parallel-reader round trip also runs at 3 ranks (the MPI tests run at
# 1, 2 and 4 by default): an odd count leaves ranks with unequal shares.
add_mpi_test(test_data_reader th_test_data_reader 3)

# The library gets src/data's sources from src/sources.cmake, which includes
# src/data/sources.cmake; this adds them only if that include is not there yet.
get_property(_th_data_added GLOBAL PROPERTY TH_DATA_SOURCES_ADDED)
if(NOT _th_data_added)
  include(${PROJECT_SOURCE_DIR}/src/data/sources.cmake)
endif()
