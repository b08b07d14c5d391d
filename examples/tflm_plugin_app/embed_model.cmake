# Writes a .tflite file as a C array, like `xxd -i` (run at build time by CMakeLists.txt):
#   cmake -DMODEL=model.tflite -DOUT=model_data.cc -P embed_model.cmake
# defines `const unsigned char g_model[]` (16-byte aligned, as TFLM wants) and g_model_len.
file(READ "${MODEL}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR bytes "${digits} / 2")
# 16 bytes a line.
string(REGEX REPLACE "(................................)" "\\1\n" hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
file(WRITE "${OUT}.tmp"
  "// Generated from ${MODEL} by embed_model.cmake.\n"
  "alignas(16) extern const unsigned char g_model[] = {\n${hex}};\n"
  "extern const unsigned int g_model_len = ${bytes};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
