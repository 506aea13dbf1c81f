# Slurm job templates (jobs/*.sbatch): the preemptible job's signal handling without Slurm
# (job_signals), and every template under a private single-node Slurm (slurm_jobs; skipped with
# exit 77 where Slurm cannot run, e.g. without root or the munge/slurm packages).
# Both compare a stopped-and-resumed run with the uninterrupted reference run bit for bit.
set(POET_JOBS_ITERATIONS 300) # long enough to be stopped twice mid-run, a few seconds per run
set(POET_JOBS_DIR ${CMAKE_CURRENT_BINARY_DIR}/jobs)

poet_add_test(jobs_reference ${CMAKE_CURRENT_SOURCE_DIR}/run_train.sh $<TARGET_FILE:poet>
              ${MPIEXEC_EXECUTABLE} 2 ${POET_JOBS_DIR}/reference --
              ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json
              --set training.iterations=${POET_JOBS_ITERATIONS})
set_tests_properties(jobs_reference PROPERTIES FIXTURES_SETUP jobs_reference PROCESSORS 2
                                               TIMEOUT 120)

poet_add_test(job_signals ${CMAKE_CURRENT_SOURCE_DIR}/test_job_signals.sh ${CMAKE_SOURCE_DIR}
              $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE} ${POET_JOBS_DIR}/signals
              ${POET_JOBS_DIR}/reference ${POET_JOBS_ITERATIONS})
set_tests_properties(job_signals PROPERTIES FIXTURES_REQUIRED jobs_reference PROCESSORS 2
                                            RESOURCE_LOCK slurm TIMEOUT 150)

poet_add_test(slurm_jobs ${CMAKE_CURRENT_SOURCE_DIR}/test_slurm_jobs.sh ${CMAKE_SOURCE_DIR}
              $<TARGET_FILE:poet> ${POET_JOBS_DIR}/slurm ${POET_JOBS_DIR}/reference
              ${POET_JOBS_ITERATIONS})
set_tests_properties(slurm_jobs PROPERTIES FIXTURES_REQUIRED jobs_reference PROCESSORS 2
                                           RESOURCE_LOCK slurm TIMEOUT 240 SKIP_RETURN_CODE 77)
