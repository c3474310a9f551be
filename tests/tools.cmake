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

# Fuzzing the GGUF reader (label fuzz), from the bundled models.
sq_fuzz_test(gguf
  SOURCES fuzz/gguf_probe.c ${PROJECT_SOURCE_DIR}/worker/engine/sq_gguf.c
  INCLUDES ${PROJECT_SOURCE_DIR}/worker/engine ${PROJECT_SOURCE_DIR}/worker/backend/cpu
  LIBS sq_core
  SEEDS ${SQ_TOOLS_MODELS})

# LoRA tensor names: the publish check and the loader agree.
add_executable(test_lora_names unit/test_lora_names.c)
target_link_libraries(test_lora_names PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.lora_names
         COMMAND test_lora_names ${SQ_TOOLS_MODELS}/stories260K.gguf ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(unit.lora_names PROPERTIES LABELS unit)

# Fuzzing the tokenizer (prompts are any bytes; generated ids are decoded)
# and LoRA adapter files against stories260K (fuzz/fuzz_tokenizer.c,
# fuzz/fuzz_lora.c: they find the model from their own source path).
sq_fuzz_test(tokenizer
  SOURCES ${PROJECT_SOURCE_DIR}/worker/engine/sq_tokenizer.c
  LIBS sq_llm
  SEEDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/seeds/tokenizer
  RUNS 100000)
sq_fuzz_test(lora
  SOURCES ${PROJECT_SOURCE_DIR}/worker/engine/sq_lora.c
  LIBS sq_llm
  SEEDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/seeds/lora
  RUNS 100000)

# The hostile-file test shares the fuzz target's accessor probe.
target_sources(test_gguf_hostile PRIVATE fuzz/gguf_probe.c)
target_include_directories(test_gguf_hostile PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

# shardq-model as a real process: CLI, random models, quantize.
if(TARGET shardq-model)
  add_executable(test_shardq_model unit/test_shardq_model.c)
  target_compile_definitions(test_shardq_model PRIVATE _POSIX_C_SOURCE=200809L)
  target_link_libraries(test_shardq_model PRIVATE sq_llm sq_testlib sq_warnings)
  add_test(NAME unit.shardq_model
           COMMAND test_shardq_model $<TARGET_FILE:shardq-model> ${SQ_TOOLS_MODELS}
                   ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(unit.shardq_model PROPERTIES LABELS unit)
endif()
