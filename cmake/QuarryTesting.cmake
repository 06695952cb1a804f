# quarry_add_test(<name> SOURCES ... LIBS ... [LABELS ...]): one GoogleTest executable, tests discovered
# by ctest. Tests run from the repository root so data paths are stable (tests/data/...).
function(quarry_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/tests")
  set(labels unit)
  if(ARG_LABELS)
    set(labels ${ARG_LABELS})
  endif()
  gtest_discover_tests(${name}
    WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
    PROPERTIES LABELS "${labels}" TIMEOUT 600
    DISCOVERY_TIMEOUT 60)
endfunction()
