# sq_jsonl: job-file parsing/validation and OpenAI-Batch result lines
# (common/sq_jsonl.h). Used by the client; no network, no database.
add_library(sq_jsonl STATIC ${CMAKE_CURRENT_LIST_DIR}/sq_jsonl.c
                     ${CMAKE_CURRENT_LIST_DIR}/sq_jsonl_task.c
                     ${CMAKE_CURRENT_LIST_DIR}/sq_jsonl_result.c)
target_include_directories(sq_jsonl PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sq_jsonl PUBLIC sq_core PRIVATE PkgConfig::JANSSON m sq_warnings)
set_target_properties(sq_jsonl PROPERTIES POSITION_INDEPENDENT_CODE ON)
