# Finddnnl.cmake — finds oneDNN's C API (Debian: libdnnl-dev) and defines DNNL::dnnl.
#
# Debian's own dnnl-config.cmake insists on OpenCL development files even for the CPU-only C API we
# use, so poet finds the header and library itself rather than pulling in OpenCL packages.
find_path(dnnl_INCLUDE_DIR dnnl.h)
find_library(dnnl_LIBRARY NAMES dnnl)
set(_dnnl_version_h "${dnnl_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h")
if(dnnl_INCLUDE_DIR AND EXISTS "${_dnnl_version_h}")
  file(STRINGS "${_dnnl_version_h}" _dnnl_major REGEX "#define DNNL_VERSION_MAJOR")
  file(STRINGS "${_dnnl_version_h}" _dnnl_minor REGEX "#define DNNL_VERSION_MINOR")
  string(REGEX MATCH "[0-9]+" _dnnl_major "${_dnnl_major}")
  string(REGEX MATCH "[0-9]+" _dnnl_minor "${_dnnl_minor}")
  set(dnnl_VERSION "${_dnnl_major}.${_dnnl_minor}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(dnnl REQUIRED_VARS dnnl_LIBRARY dnnl_INCLUDE_DIR
                                  VERSION_VAR dnnl_VERSION)
if(dnnl_FOUND AND NOT TARGET DNNL::dnnl)
  add_library(DNNL::dnnl UNKNOWN IMPORTED)
  set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION "${dnnl_LIBRARY}"
                                              INTERFACE_INCLUDE_DIRECTORIES "${dnnl_INCLUDE_DIR}")
endif()
