# eval: corpus BLEU (sacreBLEU-identical) and the 13a tokenizer.
target_sources(torch_handle PRIVATE ${CMAKE_CURRENT_LIST_DIR}/bleu.cpp)
