# Input deck (namelist parser, schema, validation) and file I/O (HDF5).
target_sources(torch_handle PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/namelist.cpp
  ${CMAKE_CURRENT_LIST_DIR}/deck.cpp
  ${CMAKE_CURRENT_LIST_DIR}/deck_schema.cpp
  ${CMAKE_CURRENT_LIST_DIR}/deck_rules.cpp
  ${CMAKE_CURRENT_LIST_DIR}/deck_suggest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/deck_doc.cpp
  ${CMAKE_CURRENT_LIST_DIR}/config.cpp
)
