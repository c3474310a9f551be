# Offline Helm chart checks (helm lint/template + Kubernetes schema
# validation). Needs node/npm and the npm registry for the pinned tools.
# With the scheduler built, the rendered scaling policies must load in it.
set(SQ_HELM_SCHEDULER)
if(TARGET shardq-scheduler)
  set(SQ_HELM_SCHEDULER $<TARGET_FILE:shardq-scheduler>)
endif()
add_test(NAME helm.chart
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/helm/check.sh
                 ${PROJECT_SOURCE_DIR}/helm/shardq ${CMAKE_BINARY_DIR}/helm-tools
                 ${SQ_HELM_SCHEDULER})
set_tests_properties(helm.chart PROPERTIES LABELS unit TIMEOUT 600)
