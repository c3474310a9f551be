# Tests of the tokenizer, the GGUF writer, hostile GGUF files, the GGUF
# fuzz target and the shardq-model tool (owner: "engine-tools").
set(SQ_TOOLS_MODELS ${PROJECT_SOURCE_DIR}/models)

add_executable(test_tokenizer unit/test_tokenizer.c)
target_link_libraries(test_tokenizer PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.tokenizer COMMAND test_tokenizer ${SQ_TOOLS_MODELS}/stories260K.gguf)
set_tests_properties(unit.tokenizer PROPERTIES LABELS unit)

add_executable(test_gguf_writer unit/test_gguf_writer.c)
target_link_libraries(test_gguf_writer PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.gguf_writer COMMAND test_gguf_writer ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(unit.gguf_writer PROPERTIES LABELS unit)

add_executable(test_gguf_hostile unit/test_gguf_hostile.c)
target_link_libraries(test_gguf_hostile PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.gguf_hostile COMMAND test_gguf_hostile ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(unit.gguf_hostile PROPERTIES LABELS unit)
