# Config parsing, validation messages and JSON round trips; serial, well under a second.
poet_test_executable(test_config ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c)
target_compile_definitions(test_config PRIVATE POET_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
poet_add_test(config $<TARGET_FILE:test_config>)
