poet_test_executable(test_tree ${CMAKE_CURRENT_SOURCE_DIR}/test_tree.c)
foreach(ranks 1 2 4 7)
  poet_add_mpi_test(tree_p${ranks} ${ranks} $<TARGET_FILE:test_tree>)
endforeach()

# No endless waits (issue 18): one rank stops answering (POET_FAULT_SLEEP_RANK sleeps for an hour at
# iteration 2); within distributed.timeout (3 s) plus a few seconds the rank waiting on it names it
# and ends the job with MPI_Abort, exit 8. Without the bounded waits these hang until the TIMEOUT.
set(POET_TIMEOUT_RUN ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh 8)
foreach(case "binary:2:no answer from rank 2 on host" "kary:0:no answer from rank 0 on host"
             "mpi:1:while waiting for MPI_Ireduce of the logit sums")
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 tree)
  list(GET parts 1 silent)
  list(GET parts 2 text)
  set(name tree_timeout_${tree})
  add_test(NAME ${name}
           COMMAND ${POET_TIMEOUT_RUN} "${text}" ${MPIEXEC_EXECUTABLE} -np 4 --oversubscribe
                   $<TARGET_FILE:poet> train ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json --quiet --overwrite
                   --set distributed.tree=${tree} --set distributed.arity=3
                   --set distributed.timeout=3
                   --set output.checkpoint_dir=${CMAKE_CURRENT_BINARY_DIR}/timeout/${tree})
  set_tests_properties(${name} PROPERTIES
                       ENVIRONMENT "${POET_TEST_ENV};POET_FAULT_SLEEP_RANK=${silent};POET_FAULT_SLEEP_ITERATION=2"
                       PROCESSORS 4 TIMEOUT 90)
endforeach()
# The same between exchanges (issue 18's blame defect): rank 2 falls silent right after iteration 4's
# exchange, where every rank then enters a collective (the loss-log flush every 5 iterations, or a
# checkpoint). Before, rank 0 sat in HDF5's collective write with no deadline and named nobody, or
# its children named rank 0 when they left the collective first; now a bounded tree sync ahead of
# every collective step names rank 2. Rank 2 wakes after 60 s: without the sync the run finishes.
foreach(case "flush:output.log_flush_every=5" "checkpoint:output.checkpoint_every=5")
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 step)
  list(GET parts 1 setting)
  set(name tree_timeout_before_${step})
  add_test(NAME ${name}
           COMMAND ${POET_TIMEOUT_RUN} "no answer from rank 2 on host" ${MPIEXEC_EXECUTABLE} -np 4
                   --oversubscribe $<TARGET_FILE:poet> train ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json
                   --quiet --overwrite --set distributed.timeout=3 --set ${setting}
                   --set output.checkpoint_dir=${CMAKE_CURRENT_BINARY_DIR}/timeout/before_${step})
  set_tests_properties(${name} PROPERTIES
                       ENVIRONMENT "${POET_TEST_ENV};POET_FAULT_SLEEP_RANK=2;POET_FAULT_SLEEP_ITERATION=4;POET_FAULT_SLEEP_AT=end;POET_FAULT_SLEEP_SECONDS=60"
                       PROCESSORS 4 TIMEOUT 120)
endforeach()
poet_add_test(tree_timeout_config ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh 3
              "distributed.timeout: expected number >= 0" $<TARGET_FILE:poet> train
              ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json --set distributed.timeout=-1)

# The job templates shorten Open MPI's out-of-band keepalive (jobs/README.md: 491 s → 9 s to end a
# job whose node lost its link).
poet_add_test(jobs_oob_keepalive ${CMAKE_CURRENT_SOURCE_DIR}/check_keepalive.sh ${CMAKE_SOURCE_DIR}/jobs)

# distributed.tree "auto" (issue 18): the cost model's picks, and the measured choice is one valid
# shape on every rank; a run with it equals the one-rank reference bit for bit, as every shape does.
poet_test_executable(test_netprobe ${CMAKE_CURRENT_SOURCE_DIR}/test_netprobe.c)
foreach(ranks 1 4)
  poet_add_mpi_test(netprobe_p${ranks} ${ranks} $<TARGET_FILE:test_netprobe>)
  set_tests_properties(netprobe_p${ranks} PROPERTIES TIMEOUT 60)
endforeach()
add_test(NAME traj_p4_auto COMMAND ${RUN_TRAIN} 4 ${CMAKE_CURRENT_BINARY_DIR}/traj/traj_p4_auto
         --ref ${CMAKE_CURRENT_BINARY_DIR}/traj/ref/trajectory -- ${TINY} --set distributed.tree=auto)
set_tests_properties(traj_p4_auto PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS 4
                                             FIXTURES_REQUIRED traj_ref TIMEOUT 300)
