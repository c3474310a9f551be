# Tests of the tokenizer, the GGUF writer, hostile GGUF files, the GGUF
# fuzz target and the shardq-model tool (owner: "engine-tools").
set(SQ_TOOLS_MODELS ${PROJECT_SOURCE_DIR}/models)

add_executable(test_tokenizer unit/test_tokenizer.c)
target_link_libraries(test_tokenizer PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.tokenizer COMMAND test_tokenizer ${SQ_TOOLS_MODELS}/stories260K.gguf)
set_tests_properties(unit.tokenizer PROPERTIES LABELS unit)
