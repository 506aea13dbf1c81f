# rng and data modules: counter-based random numbers; IDX loading and deterministic batches.
poet_test_executable(test_rng ${CMAKE_CURRENT_SOURCE_DIR}/test_rng.c)
poet_add_test(rng $<TARGET_FILE:test_rng>)

# The data test writes its IDX fixtures into the build directory; the real Fashion-MNIST checks
# run only when POET_DATA_DIR holds the files.
poet_test_executable(test_data ${CMAKE_CURRENT_SOURCE_DIR}/test_data.c)
poet_add_test(data $<TARGET_FILE:test_data> ${POET_DATA_DIR})
