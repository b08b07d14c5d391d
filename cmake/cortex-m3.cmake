# Toolchain shortcut: arm-none-eabi-gcc for Cortex-M3 (see arm-none-eabi.cmake).
set(TFLM_VMCU_CPU "cortex-m3" CACHE STRING "Cortex-M core to build for")
include("${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi.cmake")
