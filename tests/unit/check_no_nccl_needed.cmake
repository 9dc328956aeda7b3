# Fails when FILE has a link-time dependency on NCCL: a NEEDED entry of its dynamic section (readelf -d) that names
# libnccl. Also fails when readelf lists no NEEDED entry at all, so that a readelf that read nothing cannot pass.
execute_process(COMMAND ${READELF} -d ${FILE} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${READELF} -d ${FILE} failed (${rc}): ${err}")
endif()
string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*" needed "${out}")
list(LENGTH needed count)
if(count EQUAL 0)
  message(FATAL_ERROR "${READELF} -d ${FILE} lists no NEEDED entry")
endif()
foreach(entry ${needed})
  if(entry MATCHES "libnccl")
    message(NOTICE "${FILE} needs NCCL at link time: ${entry}")  # NOTICE: one unwrapped line a test can match
    message(FATAL_ERROR "link-time NCCL dependency")
  endif()
endforeach()
message(STATUS "${FILE}: no NCCL among its ${count} NEEDED entries")
