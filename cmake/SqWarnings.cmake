# Warnings and sanitizers travel as INTERFACE targets: link sq_warnings
# PRIVATE to every target we own; third-party code never sees them.
add_library(sq_warnings INTERFACE)
target_compile_options(sq_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:C,CXX>:-Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers>
  # -O3 inlining makes GCC 12's maybe-uninitialized analysis report paths
  # that cannot happen; it stays a warning there, an error in dev/CI builds.
  $<$<AND:$<COMPILE_LANGUAGE:C,CXX>,$<CONFIG:Release>>:-Wno-error=maybe-uninitialized>)
if(SQ_SANITIZE)
  target_compile_options(sq_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
  target_link_options(sq_warnings INTERFACE -fsanitize=address,undefined)
endif()
