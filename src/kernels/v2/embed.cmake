# Concatenates the device headers into one NVRTC source, dropping project includes and include guards (the files
# come in dependency order), and writes it as a C++ raw string.
string(REPLACE "|" ";" FILES "${FILES}")
set(text "")
foreach(f IN LISTS FILES)
  file(READ "${f}" part)
  string(REGEX REPLACE "#include \"[^\"]*\"\n" "" part "${part}")
  string(REPLACE "#pragma once\n" "" part "${part}")
  get_filename_component(name "${f}" NAME)
  string(APPEND text "// ---- ${name}\n${part}\n")
endforeach()
file(WRITE "${OUT}.tmp" "namespace customar::detail {\nextern const char* const kV2DeviceSource;\nconst char* const kV2DeviceSource = R\"CUSTOMAR_V2(\n${text})CUSTOMAR_V2\";\n}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
