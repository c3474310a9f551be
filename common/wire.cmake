# sq_wire: the shardq wire protocol codec (docs/protocol.md). Used by the
# broker, the client library, the worker link, the test worker and benches.
add_library(sq_wire STATIC
  ${CMAKE_CURRENT_LIST_DIR}/sq_wire.c
  ${CMAKE_CURRENT_LIST_DIR}/sq_wire_msg.c)
target_include_directories(sq_wire PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sq_wire
  PUBLIC sq_core PkgConfig::CZMQ PkgConfig::ZMQ PkgConfig::MSGPACK
  PRIVATE sq_warnings)
set_target_properties(sq_wire PROPERTIES POSITION_INDEPENDENT_CODE ON)
