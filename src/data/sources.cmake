# data: batching, the distributed sampler, synthetic tasks, the prepare task (corpus, split,
# SentencePiece, HDF5 dataset) and the parallel prefetching loader.
set_property(GLOBAL PROPERTY TH_DATA_SOURCES_ADDED TRUE)
target_sources(torch_handle PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/batching.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sampler.cpp
  ${CMAKE_CURRENT_LIST_DIR}/prefetcher.cpp
  ${CMAKE_CURRENT_LIST_DIR}/loader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/split.cpp
  ${CMAKE_CURRENT_LIST_DIR}/corpus.cpp
  ${CMAKE_CURRENT_LIST_DIR}/bible.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_identity.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dataset_file.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dataset_write.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dataset_inspect.cpp
  ${CMAKE_CURRENT_LIST_DIR}/dataset_read.cpp
  ${CMAKE_CURRENT_LIST_DIR}/prepare.cpp
  # language models: text corpora, text datasets, packed blocks
  ${CMAKE_CURRENT_LIST_DIR}/json_line.cpp
  ${CMAKE_CURRENT_LIST_DIR}/text_corpus.cpp
  ${CMAKE_CURRENT_LIST_DIR}/text_prepare.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lm_dataset_write.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lm_dataset_read.cpp
  ${CMAKE_CURRENT_LIST_DIR}/packing.cpp
  ${CMAKE_CURRENT_LIST_DIR}/packed_loader.cpp
)
