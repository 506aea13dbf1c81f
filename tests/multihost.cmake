# Four network-namespace hosts on this machine (issue 18, tests/multihost.sh): trajectories equal to
# one host for every tree shape, traffic on the links, a host whose link goes down is named within
# distributed.timeout. Root only; skipped (exit 77) where namespaces cannot be made. Runs alone: it
# owns the names psc1..4, br-psc and the subnet 10.88.18.0/24.
add_test(NAME multihost COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/multihost.sh $<TARGET_FILE:poet>
                                ${MPIEXEC_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json
                                ${CMAKE_CURRENT_BINARY_DIR}/multihost)
set_tests_properties(multihost PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" SKIP_RETURN_CODE 77
                                          TIMEOUT 600 RUN_SERIAL TRUE PROCESSORS 4)
add_test(NAME multihost_cleanup
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/multihost_cleanup.sh
                 ${CMAKE_CURRENT_SOURCE_DIR}/multihost.sh ${MPIEXEC_EXECUTABLE}
                 ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json ${CMAKE_CURRENT_BINARY_DIR}/multihost_cleanup)
set_tests_properties(multihost_cleanup PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" SKIP_RETURN_CODE 77
                                                  TIMEOUT 120 RUN_SERIAL TRUE)
