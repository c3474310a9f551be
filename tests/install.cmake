# The install tree (what the container image holds): tests/install/check.sh
# installs into a scratch prefix and runs what the Helm chart would.
add_test(NAME unit.install
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/install/check.sh ${CMAKE_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR} ${PROJECT_VERSION})
set_tests_properties(unit.install PROPERTIES LABELS unit TIMEOUT 300
                     ENVIRONMENT "${SQ_MPI_ENV}")
