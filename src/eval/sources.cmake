# eval: corpus BLEU (sacreBLEU-identical) and the 13a tokenizer; the evaluate and translate tasks.
target_sources(torch_handle PRIVATE ${CMAKE_CURRENT_LIST_DIR}/bleu.cpp
  # evaluate / translate: held-out loss, perplexity, accuracy, BLEU, data-parallel decoding.
  ${CMAKE_CURRENT_LIST_DIR}/evaluate.cpp ${CMAKE_CURRENT_LIST_DIR}/tasks.cpp
  # language models: evaluate (perplexity per token and per byte) and generate
  ${CMAKE_CURRENT_LIST_DIR}/lm_evaluate.cpp ${CMAKE_CURRENT_LIST_DIR}/generate.cpp)
