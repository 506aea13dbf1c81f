# Objectives against learner collusion (issue 15, docs/objectives.md): the blend's ends are today's
# joint training and separate one-member trainings; member dropout is bitwise across ranks and
# resume.
set(OBJ_TINY ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
set(OBJ_RUN ${CMAKE_CURRENT_SOURCE_DIR}/run_train.sh $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE})
set(OBJ_DIR ${CMAKE_CURRENT_BINARY_DIR}/objective)

# beta = 1 is the joint objective, bit for bit (traj_ref is today's joint trajectory).
poet_add_test(obj_blend1_is_joint ${OBJ_RUN} 2 ${OBJ_DIR}/blend1 --ref
              ${CMAKE_CURRENT_BINARY_DIR}/traj/ref/trajectory -- ${OBJ_TINY}
              --set training.objective=blend --set training.beta=1)
set_tests_properties(obj_blend1_is_joint PROPERTIES FIXTURES_REQUIRED traj_ref PROCESSORS 2)

# beta = 0: member 0 of a 2-member independent run (2 ranks) is a one-member run, bit for bit. The
# ensemble's gradient is a mean over members, so the one-member run takes lr/2 (an exact halving;
# momentum is linear, weight decay is 0). Other members start from their own ids' weights.
poet_add_test(obj_independent_m2 ${OBJ_RUN} 2 ${OBJ_DIR}/independent_m2 -- ${OBJ_TINY}
              --set model.members=2 --set training.objective=independent)
set_tests_properties(obj_independent_m2 PROPERTIES FIXTURES_SETUP obj_independent PROCESSORS 2)
poet_add_test(obj_single_m1 ${OBJ_RUN} 1 ${OBJ_DIR}/single_m1 -- ${OBJ_TINY}
              --set model.members=1 --set training.lr=0.1)
set_tests_properties(obj_single_m1 PROPERTIES FIXTURES_SETUP obj_independent)
poet_add_test(obj_independent_is_single /usr/bin/python3
              ${CMAKE_CURRENT_SOURCE_DIR}/check_member_losses.py
              ${OBJ_DIR}/independent_m2/ckpt/log.h5 0 ${OBJ_DIR}/single_m1/ckpt/log.h5 0)
set_tests_properties(obj_independent_is_single PROPERTIES FIXTURES_REQUIRED obj_independent)

# A blend with member dropout: the same trajectory on 1, 2 and 3 ranks and other trees.
set(OBJ_BLEND ${OBJ_TINY} --set training.objective=blend --set training.beta=0.5
              --set training.member_dropout=0.3)
poet_add_test(obj_dropout_p1 ${OBJ_RUN} 1 ${OBJ_DIR}/dropout_p1 -- ${OBJ_BLEND})
set_tests_properties(obj_dropout_p1 PROPERTIES FIXTURES_SETUP obj_dropout)
foreach(case 2:binary 3:kary 3:mpi)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 ranks)
  list(GET parts 1 tree)
  set(name obj_dropout_p${ranks}_${tree})
  poet_add_test(${name} ${OBJ_RUN} ${ranks} ${OBJ_DIR}/${name} --ref
                ${OBJ_DIR}/dropout_p1/trajectory -- ${OBJ_BLEND} --set distributed.tree=${tree})
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED obj_dropout PROCESSORS ${ranks})
endforeach()
# Exact overlap with two micro-batches: each micro-batch draws the iteration's subset.
poet_add_test(obj_dropout_chunks_ref ${OBJ_RUN} 1 ${OBJ_DIR}/dropout_chunks_ref -- ${OBJ_BLEND}
              --set distributed.chunks=2)
set_tests_properties(obj_dropout_chunks_ref PROPERTIES FIXTURES_SETUP obj_dropout_chunks)
poet_add_test(obj_dropout_chunks_p3 ${OBJ_RUN} 3 ${OBJ_DIR}/dropout_chunks_p3 --ref
              ${OBJ_DIR}/dropout_chunks_ref/trajectory -- ${OBJ_BLEND} --set distributed.chunks=2
              --set distributed.overlap=exact)
set_tests_properties(obj_dropout_chunks_p3 PROPERTIES FIXTURES_REQUIRED obj_dropout_chunks
                                                      PROCESSORS 3)

# Stopped by SIGTERM and resumed on another rank count: the drawn subsets continue exactly.
poet_add_test(obj_dropout_resume ${CMAKE_CURRENT_SOURCE_DIR}/resume_test.sh $<TARGET_FILE:poet>
              ${MPIEXEC_EXECUTABLE} term 1 3 ${OBJ_DIR}/resume ${OBJ_TINY}
              --set training.iterations=240 --set output.checkpoint_every=30
              --set training.objective=blend --set training.beta=0.5
              --set training.member_dropout=0.3)
set_tests_properties(obj_dropout_resume PROPERTIES TIMEOUT 300)

# Config errors for the new keys: one line naming the key, exit 3.
function(obj_config_error name text)
  set(args)
  foreach(s ${ARGN})
    list(APPEND args --set training.${s})
  endforeach()
  poet_add_test(obj_config_${name} ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh 3 "${text}"
                $<TARGET_FILE:poet> train ${OBJ_TINY} --quiet ${args})
endfunction()
obj_config_error(beta_range "training.beta: expected number in [0, 1], got 1.5" objective=blend
                 beta=1.5)
obj_config_error(beta_negative "training.beta: expected number in [0, 1], got -0.1"
                 objective=blend beta=-0.1)
obj_config_error(beta_without_blend "training.beta: expected no beta unless" beta=0.5)
obj_config_error(beta_with_joint "training.beta: expected no beta unless" objective=joint beta=1)
obj_config_error(blend_without_beta "training.objective: expected \"blend\" together with"
                 objective=blend)
obj_config_error(objective_unknown "training.objective: expected one of" objective=product)
# (CMake would pair an unbalanced '[' with the next ']': the texts start after it.)
obj_config_error(dropout_one "0, 1), got 1 (from --set training.member_dropout=1)"
                 member_dropout=1)
obj_config_error(dropout_negative "0, 1), got -0.5 (from --set training.member_dropout=-0.5)"
                 member_dropout=-0.5)

# Metrics ensemble papers report: accuracy, NLL, Brier, 15-bin ECE against hand-computed values.
poet_test_executable(test_metrics ${CMAKE_CURRENT_SOURCE_DIR}/test_metrics.c)
poet_add_test(metrics $<TARGET_FILE:test_metrics>)

# poet eval: the calibration metrics, the same on any rank count.
poet_add_test(obj_eval_ranks ${CMAKE_CURRENT_SOURCE_DIR}/eval_ranks.sh $<TARGET_FILE:poet>
              ${MPIEXEC_EXECUTABLE} ${OBJ_DIR}/eval_ranks ${OBJ_TINY})
set_tests_properties(obj_eval_ranks PROPERTIES PROCESSORS 3 TIMEOUT 300)
