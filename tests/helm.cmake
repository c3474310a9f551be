# Offline Helm chart checks (helm lint/template + Kubernetes schema
# validation). Needs node/npm and the npm registry for the pinned tools.
add_test(NAME helm.chart
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/helm/check.sh
                 ${PROJECT_SOURCE_DIR}/helm/shardq ${CMAKE_BINARY_DIR}/helm-tools)
set_tests_properties(helm.chart PROPERTIES LABELS unit TIMEOUT 600)
