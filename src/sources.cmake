# Library sources under src/, by layer.
target_sources(torch_handle PRIVATE
  # core: errors, memory, tensors
  ${CMAKE_CURRENT_LIST_DIR}/core/error.cpp
  ${CMAKE_CURRENT_LIST_DIR}/core/stop_signal.cpp
  ${CMAKE_CURRENT_LIST_DIR}/core/host_memory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/core/memory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/core/tensor.cpp
  # parallel: SPMD runtime and the communicator
  ${CMAKE_CURRENT_LIST_DIR}/parallel/agree.cpp
  ${CMAKE_CURRENT_LIST_DIR}/parallel/comm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/parallel/mpi_comm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/parallel/runtime.cpp
  # CPU kernels (the reference backend)
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/gemm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/elementwise.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/layernorm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/activation.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/softmax.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/embedding.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/cross_entropy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/dropout.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/adamw.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernels/cpu/convert.cpp
)
target_sources(torch_handle PRIVATE
  # model: parameters, layers, the Transformer
  ${CMAKE_CURRENT_LIST_DIR}/model/params.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model/attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model/feed_forward.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model/residual.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model/transformer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model/decoding.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model/kv_cache.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model/generation.cpp
)
target_sources(torch_handle PRIVATE
  # data: batching, sampler, synthetic tasks
  # training: optimizer, progress, tasks
  ${CMAKE_CURRENT_LIST_DIR}/train/optimizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/data_parallel.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/grad_sync.cpp
  # the ZeRO engine in parts (src/train/zero/)
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/stage_policy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/options.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/partition.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/reserved_range.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/grad_reduction.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/gatherer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/replicated_params.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/partitioned_params.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/optimizer_store.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/optimizer_step.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/checkpoint_adapter.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/memory_accounting.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/zero/engine.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/offload.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/loss_scaler.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/progress.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/trainer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/memory_budget.cpp
  ${CMAKE_CURRENT_LIST_DIR}/train/bench.cpp
  # application
  ${CMAKE_CURRENT_LIST_DIR}/app/driver.cpp
)
target_sources(torch_handle PRIVATE
  # HDF5 files of one rank: metrics, test exchange
  ${PROJECT_SOURCE_DIR}/io/h5_file.cpp
  ${PROJECT_SOURCE_DIR}/io/metrics.cpp
)
