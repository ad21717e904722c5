# th_layer(<name> [INTERFACE] HEADERS <paths under include/th> SOURCES <files> LINK <targets>)
#
# Declares the library of one layer, th_<name>. Its public include root is a folder of the build
# tree that holds links to its own headers only (build/layers/<name>/th/<name> ->
# include/th/<name>), so a target sees the headers of its own layer and of the layers it links,
# and nothing else: a layer that includes a header of a layer above it fails to compile
# ("fatal error: th/train/trainer.hpp: No such file or directory"). The layer's own source folder
# is its private include root. LINK names the layers below (PUBLIC: their headers are part of
# this layer's interface) and, after PRIVATE, what only the sources need.
include_guard(GLOBAL)

function(th_layer name)
  cmake_parse_arguments(A "INTERFACE" "" "HEADERS;SOURCES;LINK" ${ARGN})
  set(root ${PROJECT_BINARY_DIR}/layers/${name})
  file(MAKE_DIRECTORY ${root}/th)
  foreach(h ${A_HEADERS})
    if(NOT EXISTS ${PROJECT_SOURCE_DIR}/include/th/${h})
      message(FATAL_ERROR "th_layer(${name}): include/th/${h} does not exist")
    endif()
    file(REMOVE ${root}/th/${h})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/include/th/${h} ${root}/th/${h} SYMBOLIC)
  endforeach()
  if(A_INTERFACE)
    add_library(th_${name} INTERFACE)
    target_include_directories(th_${name} INTERFACE ${root})
    target_link_libraries(th_${name} INTERFACE ${A_LINK})
  else()
    add_library(th_${name} STATIC ${A_SOURCES})
    target_include_directories(th_${name} PUBLIC ${root} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(th_${name} PUBLIC ${A_LINK})
    # -fno-math-errno: std::sqrt and friends do not set errno (nothing here reads it after a math
    # call), which lets loops like AdamW's vectorise; IEEE results are unchanged.
    target_compile_options(th_${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -fno-math-errno>)
  endif()
endfunction()
