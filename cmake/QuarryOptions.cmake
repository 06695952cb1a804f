# Build options and compiler flags shared by every Quarry target.
option(QUARRY_ENGINE_ONLY "Build only kernels + model + engine + tests (no gRPC/protobuf)" OFF)
option(QUARRY_BUILD_TESTS "Build the GoogleTest suites" ON)
option(QUARRY_FUZZ "Build libFuzzer targets (needs clang)" OFF)
set(QUARRY_CUDA "AUTO" CACHE STRING "Build the CUDA kernels: AUTO (when nvcc is found), ON or OFF")
set_property(CACHE QUARRY_CUDA PROPERTY STRINGS AUTO ON OFF)

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

# x86-64-v3 = AVX2 + FMA + F16C: the vectorised CPU kernels need it (checked again at run time).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(QUARRY_CPU_ARCH_FLAGS -march=x86-64-v3 -mtune=generic)
endif()
add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:-Wall;-Wextra;-Wno-unused-parameter>")
add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${QUARRY_CPU_ARCH_FLAGS}>")
