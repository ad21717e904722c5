#pragma once
// TH_HOST_DEVICE: a function CUDA code may call on the device as well as the host (nvcc), plain
// inline C++ elsewhere. The headers written once for both the CPU loops and the CUDA kernels
// (th/core/half.hpp, th/core/rng.hpp's mix64, th/kernels/element_rules.hpp,
// th/kernels/adamw_element.hpp) use it.
#if defined(__CUDACC__)
#define TH_HOST_DEVICE __host__ __device__
#else
#define TH_HOST_DEVICE
#endif
