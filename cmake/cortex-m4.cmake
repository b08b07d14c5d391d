# Toolchain shortcut: arm-none-eabi-gcc for Cortex-M4 (see arm-none-eabi.cmake).
set(TFLM_VMCU_CPU "cortex-m4" CACHE STRING "Cortex-M core to build for")
include("${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi.cmake")
