# Engine tests (owner: "engine"). Models come from models/ in the source tree.
set(SQ_ENGINE_MODELS ${PROJECT_SOURCE_DIR}/models)

add_executable(test_gguf unit/test_gguf.c)
target_link_libraries(test_gguf PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.gguf COMMAND test_gguf ${SQ_ENGINE_MODELS})
set_tests_properties(unit.gguf PROPERTIES LABELS unit)

add_executable(test_model unit/test_model.c)
target_link_libraries(test_model PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.model COMMAND test_model ${SQ_ENGINE_MODELS})
set_tests_properties(unit.model PROPERTIES LABELS unit)

add_executable(test_model_quality unit/test_model_quality.c)
target_link_libraries(test_model_quality PRIVATE sq_llm sq_testlib sq_warnings m)
add_test(NAME unit.model_quality
         COMMAND test_model_quality ${SQ_ENGINE_MODELS} ${CMAKE_CURRENT_SOURCE_DIR}/data)
set_tests_properties(unit.model_quality PROPERTIES LABELS unit)

add_executable(test_sampler unit/test_sampler.c)
target_link_libraries(test_sampler PRIVATE sq_llm sq_testlib sq_warnings m)
add_test(NAME unit.sampler COMMAND test_sampler)
set_tests_properties(unit.sampler PROPERTIES LABELS unit)
