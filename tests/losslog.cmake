# Loss log and `poet report`: collective writes read back exactly (1 and 2 ranks), resume
# truncation, a writer killed with SIGKILL after a flush, report numbers and error messages, and the
# plot tool (skipped, exit 77, when python3 lacks h5py or matplotlib).
poet_test_executable(test_losslog ${CMAKE_CURRENT_SOURCE_DIR}/test_losslog.c)
poet_add_mpi_test(losslog 1 $<TARGET_FILE:test_losslog>)
poet_add_mpi_test(losslog_mpi2 2 $<TARGET_FILE:test_losslog>)
# Not under mpiexec: the test forks a writer before MPI starts, and each process is a singleton.
poet_add_test(losslog_kill $<TARGET_FILE:test_losslog> kill)
poet_add_test(report $<TARGET_FILE:test_losslog> report)
poet_add_test(plot bash ${CMAKE_CURRENT_SOURCE_DIR}/test_plot.sh $<TARGET_FILE:test_losslog>
                   ${CMAKE_SOURCE_DIR}/tools/plot_losses.py)
set_tests_properties(plot PROPERTIES SKIP_RETURN_CODE 77)
