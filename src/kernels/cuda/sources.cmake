# CUDA backend (included by src/CMakeLists.txt when nvcc was found): kernels under
# src/kernels/cuda, declared in include/th/kernels/cuda.hpp.
target_sources(torch_handle PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/context.cpp          # device detection, checked calls, cuBLAS handles, scratch
  ${CMAKE_CURRENT_LIST_DIR}/gemm.cu              # cuBLAS GEMMs (fp32/TF32, bf16), linear layer
  ${CMAKE_CURRENT_LIST_DIR}/elementwise.cu       # bias add/grad, residual adds, scale, sum of squares
  ${CMAKE_CURRENT_LIST_DIR}/layernorm.cu
  ${CMAKE_CURRENT_LIST_DIR}/activation.cu        # bias + ReLU / GELU
  ${CMAKE_CURRENT_LIST_DIR}/softmax.cu           # masked attention softmax and backward
  ${CMAKE_CURRENT_LIST_DIR}/embedding.cu
  ${CMAKE_CURRENT_LIST_DIR}/cross_entropy.cu
  ${CMAKE_CURRENT_LIST_DIR}/dropout.cu
  ${CMAKE_CURRENT_LIST_DIR}/adamw.cu
  ${CMAKE_CURRENT_LIST_DIR}/convert.cu           # fp32 <-> bf16 / fp16
  ${CMAKE_CURRENT_LIST_DIR}/profiler_cuda.cpp    # NVTX ranges, device-timeline events (cudaEvent pairs)
)
target_link_libraries(torch_handle PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt CUDA::nvtx3 NCCL::nccl)
target_compile_definitions(torch_handle PUBLIC TH_HAVE_CUDA=1)
# Host code inside .cu files gets the same warnings as the .cpp files (through the host compiler);
# relaxed constexpr lets device code call constexpr host functions (std::min on int64, limits).
# -lineinfo costs nothing at run time and lets profilers map kernels to source lines.
target_compile_options(torch_handle PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall,-Wextra>)
