poet_test_executable(test_tree ${CMAKE_CURRENT_SOURCE_DIR}/test_tree.c)
foreach(ranks 1 2 4 7)
  poet_add_mpi_test(tree_p${ranks} ${ranks} $<TARGET_FILE:test_tree>)
endforeach()
