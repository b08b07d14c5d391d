# CMake toolchain file for GNU Arm Embedded (arm-none-eabi-gcc), bare-metal Cortex-M.
#
#   cmake -S . -B build-m4 -DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake \
#         -DTFLM_VMCU_CPU=cortex-m4
#
# TFLM_VMCU_CPU selects the core and its floating-point ABI:
#   cortex-m0plus  -mcpu=cortex-m0plus -mfloat-abi=soft
#   cortex-m3      -mcpu=cortex-m3     -mfloat-abi=soft
#   cortex-m4      -mcpu=cortex-m4     -mfloat-abi=hard -mfpu=fpv4-sp-d16
#   cortex-m7      -mcpu=cortex-m7     -mfloat-abi=hard -mfpu=fpv5-d16
#   cortex-m33     -mcpu=cortex-m33    -mfloat-abi=hard -mfpu=fpv5-sp-d16
#   cortex-m55     -mcpu=cortex-m55    -mfloat-abi=hard -mfpu=auto (FPU + MVE)
# (cmake/cortex-m*.cmake are one-line shortcuts that set it.) The CPU flags go into
# CMAKE_<LANG>_FLAGS_INIT, so they reach the compiler, the assembler and the linker.
# Do not pass -DCMAKE_C_FLAGS/-DCMAKE_CXX_FLAGS on the command line: that replaces the
# *_FLAGS_INIT values and silently drops the CPU flags (this file stops with an error
# when it sees that). Pass extra flags with -DTFLM_VMCU_EXTRA_FLAGS="..." instead.

set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(TFLM_VMCU_CPU "cortex-m4" CACHE STRING "Cortex-M core to build for")
set_property(CACHE TFLM_VMCU_CPU PROPERTY STRINGS
  cortex-m0plus cortex-m3 cortex-m4 cortex-m7 cortex-m33 cortex-m55)
set(TFLM_VMCU_EXTRA_FLAGS "" CACHE STRING "Extra flags for every compile and link step")

if(TFLM_VMCU_CPU STREQUAL "cortex-m0plus")
  set(_tflm_vmcu_cpu_flags "-mcpu=cortex-m0plus -mfloat-abi=soft")
elseif(TFLM_VMCU_CPU STREQUAL "cortex-m3")
  set(_tflm_vmcu_cpu_flags "-mcpu=cortex-m3 -mfloat-abi=soft")
elseif(TFLM_VMCU_CPU STREQUAL "cortex-m4")
  set(_tflm_vmcu_cpu_flags "-mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16")
elseif(TFLM_VMCU_CPU STREQUAL "cortex-m7")
  set(_tflm_vmcu_cpu_flags "-mcpu=cortex-m7 -mfloat-abi=hard -mfpu=fpv5-d16")
elseif(TFLM_VMCU_CPU STREQUAL "cortex-m33")
  set(_tflm_vmcu_cpu_flags "-mcpu=cortex-m33 -mfloat-abi=hard -mfpu=fpv5-sp-d16")
elseif(TFLM_VMCU_CPU STREQUAL "cortex-m55")
  set(_tflm_vmcu_cpu_flags "-mcpu=cortex-m55 -mfloat-abi=hard -mfpu=auto")
else()
  message(FATAL_ERROR "TFLM_VMCU_CPU='${TFLM_VMCU_CPU}' is not supported: use one of "
    "cortex-m0plus, cortex-m3, cortex-m4, cortex-m7, cortex-m33, cortex-m55")
endif()
set(_tflm_vmcu_cpu_flags "-mthumb ${_tflm_vmcu_cpu_flags}")

foreach(_lang C CXX)
  if(NOT DEFINED CACHE{CMAKE_${_lang}_FLAGS})
    continue()
  endif()
  if(NOT "${CMAKE_${_lang}_FLAGS}" MATCHES "-mcpu=")
    message(FATAL_ERROR "CMAKE_${_lang}_FLAGS was set without -mcpu, which would drop the "
      "toolchain's CPU flags: pass extra flags with -DTFLM_VMCU_EXTRA_FLAGS=... instead")
  elseif(NOT "${CMAKE_${_lang}_FLAGS} " MATCHES "-mcpu=${TFLM_VMCU_CPU} ")
    message(FATAL_ERROR "this build folder was configured for another CPU "
      "(CMAKE_${_lang}_FLAGS: ${CMAKE_${_lang}_FLAGS}): use a new build folder for "
      "TFLM_VMCU_CPU=${TFLM_VMCU_CPU}")
  endif()
endforeach()

# try_compile() projects read this file again: hand them the CPU choice.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES TFLM_VMCU_CPU TFLM_VMCU_EXTRA_FLAGS)
# The compiler checks cannot link a program without a startup file and linker script.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_AR arm-none-eabi-ar CACHE FILEPATH "")
set(CMAKE_RANLIB arm-none-eabi-ranlib CACHE FILEPATH "")
set(CMAKE_OBJCOPY arm-none-eabi-objcopy CACHE FILEPATH "")
set(CMAKE_SIZE arm-none-eabi-size CACHE FILEPATH "")

# Every function and object in its own section, so --gc-sections drops what is unused.
set(_tflm_vmcu_common "${_tflm_vmcu_cpu_flags} -ffunction-sections -fdata-sections")
set(CMAKE_C_FLAGS_INIT "${_tflm_vmcu_common} ${TFLM_VMCU_EXTRA_FLAGS}")
set(CMAKE_CXX_FLAGS_INIT
  "${_tflm_vmcu_common} -fno-exceptions -fno-rtti -fno-threadsafe-statics ${TFLM_VMCU_EXTRA_FLAGS}")
set(CMAKE_ASM_FLAGS_INIT "${_tflm_vmcu_cpu_flags} ${TFLM_VMCU_EXTRA_FLAGS}")
set(CMAKE_EXE_LINKER_FLAGS_INIT
  "${_tflm_vmcu_cpu_flags} -Wl,--gc-sections --specs=nano.specs ${TFLM_VMCU_EXTRA_FLAGS}")

# Only the cross toolchain's headers and libraries; programs (cmake, python) from the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
