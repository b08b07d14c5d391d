# CMake package for the tflm-vmcu runtime from its sources: a pip install
# (`tflm-vmcu --cmake-dir` prints this folder) or a checkout.
#
#   find_package(tflm_vmcu CONFIG REQUIRED)      # -Dtflm_vmcu_DIR=$(tflm-vmcu --cmake-dir)
#   target_link_libraries(app PRIVATE tflm_vmcu::tflm_vmcu)
#
# The library is built in the consumer's project, with its toolchain (a Cortex-M toolchain
# file included), so one install serves every core. From the toolchain it needs memcpy,
# memmove and memset (libc), floor, frexp, round and roundf (libm: link `m`), and libgcc.
get_filename_component(_tflm_vmcu_root "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(NOT TARGET tflm_vmcu::tflm_vmcu)
  add_subdirectory("${_tflm_vmcu_root}" "${CMAKE_BINARY_DIR}/_tflm_vmcu" EXCLUDE_FROM_ALL)
endif()
set(tflm_vmcu_FOUND TRUE)
