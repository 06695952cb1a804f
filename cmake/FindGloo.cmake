# FindGloo: Gloo collectives (Debian libgloo-dev: headers in /usr/include/gloo, /usr/lib/libgloo.so).
# Debian's own GlooConfig.cmake only describes a RelWithDebInfo build and names a bare `gloo` target, so
# this module finds the header and library directly. Defines Gloo_FOUND, Gloo_INCLUDE_DIR, Gloo_LIBRARY and
# the imported target Gloo::gloo (links Threads).
find_path(Gloo_INCLUDE_DIR NAMES gloo/alltoallv.h gloo/rendezvous/file_store.h)
find_library(Gloo_LIBRARY NAMES gloo PATHS /usr/lib /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
if(Gloo_INCLUDE_DIR AND EXISTS "${Gloo_INCLUDE_DIR}/gloo/config.h")
  file(STRINGS "${Gloo_INCLUDE_DIR}/gloo/config.h" _gloo_ver REGEX "#define GLOO_VERSION_(MAJOR|MINOR|PATCH) ")
  string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*PATCH ([0-9]+).*" "\\1.\\2.\\3" Gloo_VERSION "${_gloo_ver}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Gloo REQUIRED_VARS Gloo_LIBRARY Gloo_INCLUDE_DIR VERSION_VAR Gloo_VERSION)
if(Gloo_FOUND AND NOT TARGET Gloo::gloo)
  find_package(Threads REQUIRED)
  add_library(Gloo::gloo UNKNOWN IMPORTED)
  set_target_properties(Gloo::gloo PROPERTIES
    IMPORTED_LOCATION "${Gloo_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${Gloo_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
mark_as_advanced(Gloo_INCLUDE_DIR Gloo_LIBRARY)
