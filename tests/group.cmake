# More ranks than members (issue 18): member groups of S ranks, each rank a shard of every batch
# (group.h). P <= M stays bitwise as before (train.cmake's traj_* tests).
set(TINY ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
set(RUN_TRAIN ${CMAKE_CURRENT_SOURCE_DIR}/run_train.sh $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE})
set(GROUPS_TEST ${CMAKE_CURRENT_SOURCE_DIR}/groups_test.sh $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE})
set(GROUP_DIR ${CMAKE_CURRENT_BINARY_DIR}/groups)

# M = 2 on P = 4 and M = 3 on P = 6 (groups of 2): two runs equal bit for bit, and within fp32
# rounding of one rank over 15 iterations (groups_test.sh: losses 1e-7 relative, weights 1e-6 +
# 1e-5·|ref|). Uneven shards, the loss still normalised by M·B: batch 41 over groups of 2 (21 and
# 20 rows); M = 2 on P = 6, groups of 3 (14, 13 and 13 rows).
foreach(case 4:2:40 6:3:40 4:2:41 6:2:40)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 ranks)
  list(GET parts 1 members)
  list(GET parts 2 batch)
  set(name groups_p${ranks}_m${members}_b${batch})
  poet_add_test(${name} ${GROUPS_TEST} match:${ranks} ${GROUP_DIR}/${name} ${TINY}
                --set model.members=${members} --set training.batch_size=${batch}
                --set training.iterations=15)
  set_tests_properties(${name} PROPERTIES PROCESSORS ${ranks} TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()

# Even shards without micro-batches: a group's shard-order sum of the weight gradients is the sum
# one rank forms over S micro-batches, so the layout follows one rank with distributed.chunks = S bit
# for bit, whatever the tree, fusion or threads.
foreach(members 2 3)
  poet_add_test(groups_chunks_ref_m${members} ${RUN_TRAIN} 1 ${GROUP_DIR}/chunks_ref_m${members} --
                ${TINY} --set model.members=${members} --set distributed.chunks=2)
  set_tests_properties(groups_chunks_ref_m${members} PROPERTIES FIXTURES_SETUP groups_chunks_m${members})
endforeach()
foreach(case 4:2:binary:1 6:3:kary:2 6:3:mpi:1 4:2:auto:1)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 ranks)
  list(GET parts 1 members)
  list(GET parts 2 tree)
  list(GET parts 3 threads)
  set(name traj_groups_p${ranks}_m${members}_${tree})
  add_test(NAME ${name} COMMAND ${RUN_TRAIN} ${ranks} ${GROUP_DIR}/${name}
           --ref ${GROUP_DIR}/chunks_ref_m${members}/trajectory -- ${TINY}
           --set model.members=${members} --set distributed.tree=${tree} --set distributed.arity=3
           --set model.fused=true --set training.threads=${threads})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS ${ranks}
                                          FIXTURES_REQUIRED groups_chunks_m${members} TIMEOUT 300)
endforeach()

# poet eval of a P > M run's checkpoint (one rank per group evaluates) equals one rank's.
poet_add_test(groups_eval_p4 ${GROUPS_TEST} eval:4 ${GROUP_DIR}/eval_p4 ${TINY}
              --set model.members=2 --set training.iterations=10)
set_tests_properties(groups_eval_p4 PROPERTIES PROCESSORS 4 TIMEOUT 120)

# A rank builds only its shard's images (poet_batcher_set_rows), with augmentation drawn per image
# and on the prefetch thread: still one rank's chunks = 2 run bit for bit.
set(GROUP_AUGMENT data.augment={\"crop_padding\":2,\"flip\":true})
poet_add_test(groups_augment_ref ${RUN_TRAIN} 1 ${GROUP_DIR}/augment_ref -- ${TINY}
              --set model.members=2 --set distributed.chunks=2 --set ${GROUP_AUGMENT}
              --set training.iterations=20)
set_tests_properties(groups_augment_ref PROPERTIES FIXTURES_SETUP groups_augment)
add_test(NAME traj_groups_p4_m2_augment COMMAND ${RUN_TRAIN} 4 ${GROUP_DIR}/augment_p4
         --ref ${GROUP_DIR}/augment_ref/trajectory -- ${TINY} --set model.members=2
         --set ${GROUP_AUGMENT} --set training.iterations=20 --set data.prefetch=2)
set_tests_properties(traj_groups_p4_m2_augment PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS 4
                                                  FIXTURES_REQUIRED groups_augment TIMEOUT 300)

# Batch normalisation per shard (DDP without SyncBatchNorm): the trajectory of M = 2 on P = 4 is one
# rank's with chunks = 2 bit for bit (each micro-batch normalised alone); resumed after SIGTERM on
# the same layout, the final checkpoints (running statistics included, shard 0's) equal the
# uninterrupted run's.
set(TINY_BN ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny-bn.json)
poet_add_test(groups_bn_ref ${RUN_TRAIN} 1 ${GROUP_DIR}/bn_ref -- ${TINY_BN} --set model.members=2
              --set distributed.chunks=2)
set_tests_properties(groups_bn_ref PROPERTIES FIXTURES_SETUP groups_bn TIMEOUT 300)
add_test(NAME traj_groups_bn_p4_m2 COMMAND ${RUN_TRAIN} 4 ${GROUP_DIR}/bn_p4
         --ref ${GROUP_DIR}/bn_ref/trajectory -- ${TINY_BN} --set model.members=2)
set_tests_properties(traj_groups_bn_p4_m2 PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS 4
                                             FIXTURES_REQUIRED groups_bn TIMEOUT 300)
poet_add_test(groups_resume_bn_term_p4_to_p4 ${CMAKE_CURRENT_SOURCE_DIR}/resume_test.sh
              $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE} term 4 4 ${GROUP_DIR}/resume_bn_p4
              ${TINY_BN} --set model.members=2 --set training.iterations=160
              --set output.checkpoint_every=20)
set_tests_properties(groups_resume_bn_term_p4_to_p4 PROPERTIES PROCESSORS 4 TIMEOUT 300)

# Synchronised batch normalisation (distributed.sync_batchnorm): the group's shards normalise with
# the whole batch's statistics, so M = 2 on P = 4 follows one rank (groups_test.sh syncbn: the first
# losses within 5e-5, where per-shard statistics are 2.5e-4 and more away), bitwise run to run;
# fused members too (G = 2 > 1 thread: a lane per member). Micro-batches (chunks) are synchronised
# micro-batch by micro-batch, so they follow no one-rank run (docs/design.md).
foreach(case "p4:" "p4_fused:--set;model.fused=true;--set;training.threads=1")
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 tag)
  list(SUBLIST parts 1 -1 extra)
  set(name groups_syncbn_${tag})
  poet_add_test(${name} ${GROUPS_TEST} syncbn:4 ${GROUP_DIR}/${name} ${TINY_BN}
                --set model.members=2 --set training.iterations=6 ${extra})
  set_tests_properties(${name} PROPERTIES PROCESSORS 4 TIMEOUT 300)
endforeach()
# A rank that fails on its own mid-run (injected) does not leave its group waiting in the
# statistics' exchange: the job ends with that rank's message within seconds, not the timeout.
poet_add_test(groups_syncbn_rank_failure ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh nz
              "injected failure at iteration 3" env POET_FAULT_RANK=1 POET_FAULT_ITERATION=3
              ${MPIEXEC_EXECUTABLE} -np 2 --oversubscribe $<TARGET_FILE:poet> train ${TINY_BN}
              --set model.members=1 --set distributed.sync_batchnorm=true
              --set distributed.timeout=600
              --set output.checkpoint_dir=\"${GROUP_DIR}/syncbn_fault\" --overwrite)
set_tests_properties(groups_syncbn_rank_failure PROPERTIES PROCESSORS 2 TIMEOUT 60)

# Micro-batches inside a shard: overlapped (exact) equals not overlapped, bit for bit.
poet_add_test(groups_chunks_none ${RUN_TRAIN} 4 ${GROUP_DIR}/chunks_none -- ${TINY}
              --set model.members=2 --set distributed.chunks=2)
set_tests_properties(groups_chunks_none PROPERTIES FIXTURES_SETUP groups_chunks_none PROCESSORS 4)
poet_add_test(groups_overlap_exact ${RUN_TRAIN} 4 ${GROUP_DIR}/overlap_exact
              --ref ${GROUP_DIR}/chunks_none/trajectory -- ${TINY} --set model.members=2
              --set distributed.chunks=2 --set distributed.overlap=exact)
set_tests_properties(groups_overlap_exact PROPERTIES FIXTURES_REQUIRED groups_chunks_none
                                                     PROCESSORS 4 TIMEOUT 300)
# The stale mode with groups still learns (M = 4 in 2 groups of 2; as train_stale on 2 ranks).
poet_add_test(groups_stale ${RUN_TRAIN} 4 ${GROUP_DIR}/stale --falls 0.3 -- ${TINY}
              --set distributed.group_size=2 --set distributed.overlap=stale
              --set training.iterations=200 --set training.lr=0.1)
set_tests_properties(groups_stale PROPERTIES PROCESSORS 4 TIMEOUT 300)

# Resume: on the same layout bit for bit (SIGTERM, resume_test.sh); across layouts (P = 4 → 2 and
# 2 → 4 with M = 2) within the tolerance of one uninterrupted rank, the loss log consistent.
poet_add_test(groups_resume_term_p4_to_p4 ${CMAKE_CURRENT_SOURCE_DIR}/resume_test.sh
              $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE} term 4 4 ${GROUP_DIR}/resume_p4
              ${TINY} --set model.members=2 --set training.iterations=240
              --set output.checkpoint_every=30)
set_tests_properties(groups_resume_term_p4_to_p4 PROPERTIES PROCESSORS 4 TIMEOUT 300)
foreach(case 4:2 2:4 6:4)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 from)
  list(GET parts 1 to)
  set(name groups_resume_p${from}_to_p${to})
  poet_add_test(${name} ${GROUPS_TEST} resume:${from}:${to}:8 ${GROUP_DIR}/${name} ${TINY}
                --set model.members=2 --set training.iterations=15 --set output.checkpoint_every=4)
  set_tests_properties(${name} PROPERTIES PROCESSORS 4 TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()

# Impossible layouts: one line naming the key, config error (exit 3), before any data is read.
set(GROUP_ERROR ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh 3)
foreach(case
    "4:group_size=3:model.members=2:distributed.group_size: expected a divisor of the run's 4 ranks, got 3"
    "4:group_size=1:model.members=2:4 ranks in groups of 1 make 4 member groups, but the 2 members cannot be spread over them"
    "4:chunks=8:model.members=2:distributed.chunks: expected a divisor of every shard's rows (batch 40 over the 2 ranks of a member group gives shards of 20 rows), got 8"
    "4:group_size=4:training.batch_size=3:training.batch_size: 3 rows cannot be split over the 4 ranks of a member group")
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 ranks)
  list(GET parts 1 setting)
  list(GET parts 2 other)
  list(GET parts 3 text)
  string(REGEX REPLACE "[=.]" "_" tag "${setting}")
  set(name groups_error_${tag})
  poet_add_test(${name} ${GROUP_ERROR} "${text}" ${MPIEXEC_EXECUTABLE} -np ${ranks} --oversubscribe
                $<TARGET_FILE:poet> train ${TINY} --set distributed.${setting} --set ${other}
                --set output.checkpoint_dir=\"${GROUP_DIR}/${name}\")
  set_tests_properties(${name} PROPERTIES PROCESSORS ${ranks} TIMEOUT 120)
endforeach()

# No endless waits in a group (distributed.timeout 3 s): with M = 2 on P = 4, rank 3 (group 1,
# shard 1) stops answering; its neighbour in shard 1's tree (rank 1) names it by its rank in the
# run, not its rank in the shard's tree. With M = 1 on P = 2 there is no tree to wait on: rank 0
# waits for rank 1 in the group all-reduce: "no answer from rank 1 on host H for 4.5 s (…) while
# waiting for its shard's weight gradients (all-reduce of member group 0)". Exit 8 (MPI_Abort).
foreach(case "4:2:3:no answer from rank 3 on host" "2:1:1:gradients (all-reduce of member group 0)")
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 ranks)
  list(GET parts 1 members)
  list(GET parts 2 silent)
  list(GET parts 3 text)
  set(name groups_timeout_p${ranks}_m${members})
  add_test(NAME ${name}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh 8 "${text}" ${MPIEXEC_EXECUTABLE}
                   -np ${ranks} --oversubscribe $<TARGET_FILE:poet> train ${TINY} --quiet
                   --overwrite --set model.members=${members} --set distributed.timeout=3
                   --set output.checkpoint_dir=${GROUP_DIR}/${name})
  set_tests_properties(${name} PROPERTIES
                       ENVIRONMENT "${POET_TEST_ENV};POET_FAULT_SLEEP_RANK=${silent};POET_FAULT_SLEEP_ITERATION=2"
                       PROCESSORS ${ranks} TIMEOUT 90)
endforeach()
