# Deadline-aware stopping (issue 16): training.deadline / --deadline and
# output.checkpoint_every_seconds, on the test clock (POET_TEST_SECONDS_PER_STEP, see
# deadline_test.sh) so no case depends on the machine's speed.
set(DEADLINE ${CMAKE_CURRENT_SOURCE_DIR}/deadline_test.sh $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE})
set(DEADLINE_ARGS ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json --set training.iterations=120
                  --set output.checkpoint_every=30)
foreach(case stop:1 stop:3 slurm:2 every:1 every:3)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 what)
  list(GET parts 1 ranks)
  set(name deadline_${what}_p${ranks})
  poet_add_test(${name} bash ${DEADLINE} ${what} ${ranks}
                ${CMAKE_CURRENT_BINARY_DIR}/deadline/${name} ${DEADLINE_ARGS})
  set_tests_properties(${name} PROPERTIES PROCESSORS ${ranks} TIMEOUT 300)
endforeach()

set(EXPECT bash ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh)
poet_add_test(deadline_past ${EXPECT} 3
              "training.deadline: the deadline 2020-01-01T00:00:00 is already past"
              $<TARGET_FILE:poet> train ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json --quiet
              --set "output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/deadline/past\""
              --overwrite --deadline 2020-01-01T00:00:00)
poet_add_test(deadline_bad ${EXPECT} 3
              "training.deadline: expected \"slurm\" or an ISO time such as \"2026-12-02T15:40:00\", got \"at noon\""
              $<TARGET_FILE:poet> train ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json
              --deadline "at noon")
poet_add_test(deadline_slurm_no_job ${EXPECT} 3
              "training.deadline: \"slurm\" needs SLURM_JOB_ID"
              env -u SLURM_JOB_ID $<TARGET_FILE:poet> train
              ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json --quiet
              --set "output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/deadline/nojob\""
              --overwrite --deadline slurm)
set_tests_properties(deadline_past deadline_bad deadline_slurm_no_job PROPERTIES TIMEOUT 120)

# jobs/train-chain.sh (clusters that forbid requeue): the chain of afternotok dependencies, with a
# stand-in sbatch.
poet_add_test(jobs_chain bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs_chain.sh ${CMAKE_SOURCE_DIR}
              ${CMAKE_CURRENT_BINARY_DIR}/deadline/jobs_chain)
set_tests_properties(jobs_chain PROPERTIES TIMEOUT 60)
