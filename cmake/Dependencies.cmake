# Every external dependency, found once, exposed as an imported target.

find_package(MPI REQUIRED COMPONENTS C CXX)

set(HDF5_PREFER_PARALLEL ON)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "HDF5 at ${HDF5_INCLUDE_DIRS} is serial; Torch-Handle needs parallel HDF5 "
                      "(Debian: libhdf5-openmpi-dev; run tests/setup-deps.sh)")
endif()
if(NOT TARGET hdf5::hdf5)
  add_library(hdf5::hdf5 INTERFACE IMPORTED)
  target_include_directories(hdf5::hdf5 INTERFACE ${HDF5_C_INCLUDE_DIRS} ${HDF5_INCLUDE_DIRS})
  target_link_libraries(hdf5::hdf5 INTERFACE ${HDF5_C_LIBRARIES} ${HDF5_LIBRARIES})
  target_compile_definitions(hdf5::hdf5 INTERFACE ${HDF5_C_DEFINITIONS} ${HDF5_DEFINITIONS})
endif()

find_package(Eigen3 3.3 REQUIRED NO_MODULE)

set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
# openblas_set_num_threads() is declared in OpenBLAS's cblas.h; find its folder.
find_path(OPENBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread)

# Kokkos (Debian 3.4 from Trilinos): its imported target points at ${prefix}/include, but the
# headers live in ${prefix}/include/trilinos. Wrap it in a target of ours with the right path;
# system files stay untouched.
find_package(Kokkos REQUIRED)
find_path(TH_KOKKOS_INCLUDE_DIR Kokkos_Core.hpp PATHS /usr/include/trilinos /usr/include
          PATH_SUFFIXES trilinos kokkos)
if(NOT TH_KOKKOS_INCLUDE_DIR)
  message(FATAL_ERROR "Kokkos_Core.hpp not found (Debian: libtrilinos-kokkos-dev)")
endif()
add_library(th_kokkos INTERFACE)
target_link_libraries(th_kokkos INTERFACE Kokkos::kokkos)
target_include_directories(th_kokkos SYSTEM INTERFACE ${TH_KOKKOS_INCLUDE_DIR})
# Which host execution space this Kokkos provides, for the summary.
file(STRINGS ${TH_KOKKOS_INCLUDE_DIR}/KokkosCore_config.h _kk_spaces REGEX "^#define KOKKOS_ENABLE_(SERIAL|OPENMP|THREADS)")
string(REGEX REPLACE "#define KOKKOS_ENABLE_" "" TH_KOKKOS_HOST_SPACES "${_kk_spaces}")

# SentencePiece ships a pkg-config file only; make an imported target from it.
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_library(SENTENCEPIECE_TRAIN_LIBRARY sentencepiece_train REQUIRED)
add_library(SentencePiece::sentencepiece INTERFACE IMPORTED)
target_link_libraries(SentencePiece::sentencepiece INTERFACE PkgConfig::SENTENCEPIECE ${SENTENCEPIECE_TRAIN_LIBRARY})

# oneDNN (optional): matmul primitives for the GEMM engine (src/kernels/cpu/gemm_engine.cpp),
# JIT code for the CPU it runs on, bf16 on AVX-512-BF16 / AMX. Without it the GEMMs run on
# OpenBLAS alone. Debian's oneDNN config requires OpenCL (its GPU runtime): look for that first so
# that a missing one means "no oneDNN", not a configure error. oneDNN's OpenMP runtime takes its
# thread count from omp_set_num_threads(), so we link the OpenMP library (no -fopenmp on our code).
set(TH_HAVE_ONEDNN OFF)
set(TH_ONEDNN_NOTE "not found (GEMMs on OpenBLAS only; Debian: libdnnl-dev)")
option(TH_ENABLE_ONEDNN "Use oneDNN for GEMMs when it is found" ON)
if(NOT TH_ENABLE_ONEDNN)
  set(TH_ONEDNN_NOTE "disabled (TH_ENABLE_ONEDNN=OFF; GEMMs on OpenBLAS only)")
else()
  find_package(OpenCL QUIET)
  if(OpenCL_FOUND)
    find_package(dnnl CONFIG QUIET)
  endif()
  # Without OpenCL's development files (a machine with libdnnl-dev alone) the package config
  # cannot load: find the header and library directly; the version comes from dnnl_version.h.
  if(NOT TARGET DNNL::dnnl)
    find_path(TH_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl_version.h)
    find_library(TH_DNNL_LIBRARY dnnl)
    if(TH_DNNL_INCLUDE_DIR AND TH_DNNL_LIBRARY)
      file(STRINGS "${TH_DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _dnnl_v
           REGEX "#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
      string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCH ([0-9]+).*" "\\1.\\2.\\3"
             dnnl_VERSION "${_dnnl_v}")
      add_library(DNNL::dnnl UNKNOWN IMPORTED)
      set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION "${TH_DNNL_LIBRARY}"
                            INTERFACE_INCLUDE_DIRECTORIES "${TH_DNNL_INCLUDE_DIR}")
      set(dnnl_FOUND TRUE)
      set(dnnl_DIR "${TH_DNNL_LIBRARY}")
    endif()
  endif()
  find_package(OpenMP QUIET COMPONENTS CXX)
  if(dnnl_FOUND AND TARGET DNNL::dnnl AND OpenMP_CXX_FOUND)
    if(dnnl_VERSION VERSION_GREATER_EQUAL 3)
      set(TH_ONEDNN_NOTE "${dnnl_VERSION} found, but the GEMM engine uses the 2.x API (GEMMs on OpenBLAS only)")
    else()
      set(TH_HAVE_ONEDNN ON)
      set(TH_ONEDNN_NOTE "${dnnl_VERSION} (${dnnl_DIR})")
    endif()
  endif()
endif()

# zlib's crc32_z/crc32_combine (checkpoint CRC-32s).
find_package(ZLIB REQUIRED)

if(TH_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# CUDA: optional, enabled automatically when a compiler is found (check_language, then enable).
set(TH_HAVE_CUDA OFF)
if(TH_ENABLE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)   # H200 / H100; override with -DCMAKE_CUDA_ARCHITECTURES=...
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    find_package(CUDAToolkit REQUIRED)
    include(FindNCCL)
    set(TH_HAVE_CUDA ON)
  endif()
endif()
