# The HDF5 idiom module (h5util): attributes round trip, handles close and reset, readers fail with
# the caller's status and a message naming file and attribute. Serial, no MPI.
poet_test_executable(test_h5util ${CMAKE_CURRENT_SOURCE_DIR}/test_h5util.c)
poet_add_test(h5util $<TARGET_FILE:test_h5util> ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(h5util PROPERTIES TIMEOUT 60)
