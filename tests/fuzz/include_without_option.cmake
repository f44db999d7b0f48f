# Lets scripts/fuzz.sh build the fuzz targets while the top-level CMakeLists.txt has no FUZZ
# option yet: passed as -DCMAKE_PROJECT_INCLUDE=<this file>, it runs right after project() and
# defers include(tests/fuzz/CMakeLists.txt) to the end of the top-level file, when the libraries
# exist. Once the top-level file has `if(FUZZ) add_subdirectory(tests/fuzz) endif()`, the
# directory marks itself added and this hook does nothing.
function(sidecar_add_fuzz_targets)
  get_property(added GLOBAL PROPERTY SIDECAR_FUZZ_ADDED)
  if(NOT added)
    # add_subdirectory is not allowed in deferred calls; the file works when include()d too.
    include(${CMAKE_SOURCE_DIR}/tests/fuzz/CMakeLists.txt)
  endif()
endfunction()
cmake_language(DEFER CALL sidecar_add_fuzz_targets)
