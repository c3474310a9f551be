# The container image (Dockerfile) built without a container engine and
# the cluster run from it: tests/image/rehearse.sh (root, Debian's mirror;
# exit 77, skipped, where this machine allows no mounts).
add_test(NAME image.rehearse COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/image/rehearse.sh)
set_tests_properties(image.rehearse PROPERTIES LABELS image TIMEOUT 900 SKIP_RETURN_CODE 77
                     RUN_SERIAL TRUE)   # it builds the tree: alone, as in CI
