# Distributed training: trajectories must not depend on the rank count or tree shape (issue 3).
set(TINY ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
set(RUN_TRAIN ${CMAKE_CURRENT_SOURCE_DIR}/run_train.sh $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE})

# The reference: one rank, binary tree (a single rank has no tree traffic at all).
poet_add_test(traj_ref ${RUN_TRAIN} 1 ${CMAKE_CURRENT_BINARY_DIR}/traj/ref -- ${TINY})
set_tests_properties(traj_ref PROPERTIES FIXTURES_SETUP traj_ref)

foreach(ranks 1 2 3 4)
  foreach(tree binary kary mpi)
    set(name traj_p${ranks}_${tree})
    add_test(NAME ${name} COMMAND ${RUN_TRAIN} ${ranks} ${CMAKE_CURRENT_BINARY_DIR}/traj/${name}
             --ref ${CMAKE_CURRENT_BINARY_DIR}/traj/ref/trajectory --
             ${TINY} --set distributed.tree=${tree} --set distributed.arity=3)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS ${ranks}
                                            FIXTURES_REQUIRED traj_ref)
  endforeach()
endforeach()

# Micro-batches overlapped with communication give exactly the non-overlapped micro-batch run.
poet_add_test(traj_chunks_ref ${RUN_TRAIN} 2 ${CMAKE_CURRENT_BINARY_DIR}/traj/chunks_ref --
              ${TINY} --set distributed.chunks=2)
set_tests_properties(traj_chunks_ref PROPERTIES FIXTURES_SETUP traj_chunks PROCESSORS 2)
poet_add_test(traj_overlap_exact ${RUN_TRAIN} 2 ${CMAKE_CURRENT_BINARY_DIR}/traj/overlap_exact
              --ref ${CMAKE_CURRENT_BINARY_DIR}/traj/chunks_ref/trajectory --
              ${TINY} --set distributed.chunks=2 --set distributed.overlap=exact)
set_tests_properties(traj_overlap_exact PROPERTIES FIXTURES_REQUIRED traj_chunks PROCESSORS 2)

# The stale mode is a different algorithm: it must still learn. run_train.sh --falls checks that the
# mean loss of the last 10 iterations is below the first 10's by the given margin.
poet_add_test(train_stale ${RUN_TRAIN} 2 ${CMAKE_CURRENT_BINARY_DIR}/traj/stale --falls 0.3 --
              ${TINY} --set distributed.overlap=stale --set training.iterations=200
              --set training.lr=0.1)
set_tests_properties(train_stale PROPERTIES PROCESSORS 2)

# The loss log of a 2-rank run holds exactly the iterations run, with the losses printed (issue 5).
set_tests_properties(traj_p2_binary PROPERTIES FIXTURES_SETUP log_p2)
poet_add_test(log_p2_matches_printed /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_log.py
              ${CMAKE_CURRENT_BINARY_DIR}/traj/traj_p2_binary/ckpt/log.h5
              ${CMAKE_CURRENT_BINARY_DIR}/traj/traj_p2_binary/trajectory 4)
set_tests_properties(log_p2_matches_printed PROPERTIES FIXTURES_REQUIRED log_p2)

# Heterogeneous ensembles (two architectures) train across ranks, bit for bit like on one rank.
set(HETERO ${CMAKE_SOURCE_DIR}/configs/heterogeneous.json --set training.iterations=30
           --set training.batch_size=40 --set training.lr=0.1 --set training.log_every=0
           --set training.eval_every=0 --set output.checkpoint_every=0)
poet_add_test(hetero_p1 ${RUN_TRAIN} 1 ${CMAKE_CURRENT_BINARY_DIR}/traj/hetero_p1 -- ${HETERO})
set_tests_properties(hetero_p1 PROPERTIES FIXTURES_SETUP hetero)
poet_add_test(hetero_p3 ${RUN_TRAIN} 3 ${CMAKE_CURRENT_BINARY_DIR}/traj/hetero_p3 --ref
              ${CMAKE_CURRENT_BINARY_DIR}/traj/hetero_p1/trajectory -- ${HETERO})
set_tests_properties(hetero_p3 PROPERTIES FIXTURES_REQUIRED hetero PROCESSORS 3)

# Fused stacks (all of a rank's members in one oneDNN graph) and thread counts do not change a
# member's arithmetic: the trajectory stays bitwise that of the unfused one-rank reference.
foreach(case 1:2 2:1 3:2)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 ranks)
  list(GET parts 1 threads)
  set(name traj_fused_p${ranks}_t${threads})
  add_test(NAME ${name} COMMAND ${RUN_TRAIN} ${ranks} ${CMAKE_CURRENT_BINARY_DIR}/traj/${name}
           --ref ${CMAKE_CURRENT_BINARY_DIR}/traj/ref/trajectory --
           ${TINY} --set model.fused=true --set training.threads=${threads})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS ${ranks}
                                          FIXTURES_REQUIRED traj_ref)
endforeach()

# Convolutions as oneDNN primitives (model.convolution = "onednn", the other algorithm) keep the
# same guarantee: fused on 3 ranks × 2 threads equals one unfused rank bit for bit. (Between the
# two algorithms results differ by rounding only; test_net holds both against the reference.)
poet_add_test(traj_onednn_ref ${RUN_TRAIN} 1 ${CMAKE_CURRENT_BINARY_DIR}/traj/onednn_ref --
              ${TINY} --set model.convolution=onednn)
set_tests_properties(traj_onednn_ref PROPERTIES FIXTURES_SETUP traj_onednn)
poet_add_test(traj_onednn_fused_p3_t2 ${RUN_TRAIN} 3 ${CMAKE_CURRENT_BINARY_DIR}/traj/onednn_p3 --ref
              ${CMAKE_CURRENT_BINARY_DIR}/traj/onednn_ref/trajectory -- ${TINY}
              --set model.convolution=onednn --set model.fused=true --set training.threads=2)
set_tests_properties(traj_onednn_fused_p3_t2 PROPERTIES FIXTURES_REQUIRED traj_onednn PROCESSORS 3)

# A residual network (a graph with add layers and a strided 1x1 projection, issue 13): fused or
# not, on 1..3 ranks, 1 or 2 threads, binary or k-ary tree, both convolution algorithms, every run
# equals one unfused rank bit for bit.
set(TINY_RES ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny-residual.json)
foreach(conv gemm onednn)
  poet_add_test(traj_residual_${conv}_ref ${RUN_TRAIN} 1 ${CMAKE_CURRENT_BINARY_DIR}/traj/residual_${conv}_ref
                -- ${TINY_RES} --set model.convolution=${conv})
  set_tests_properties(traj_residual_${conv}_ref PROPERTIES FIXTURES_SETUP traj_residual_${conv})
  foreach(case 1:2:binary 2:1:kary 3:2:binary)
    string(REPLACE ":" ";" parts ${case})
    list(GET parts 0 ranks)
    list(GET parts 1 threads)
    list(GET parts 2 tree)
    set(name traj_residual_${conv}_p${ranks}_t${threads}_${tree})
    add_test(NAME ${name} COMMAND ${RUN_TRAIN} ${ranks} ${CMAKE_CURRENT_BINARY_DIR}/traj/${name}
             --ref ${CMAKE_CURRENT_BINARY_DIR}/traj/residual_${conv}_ref/trajectory --
             ${TINY_RES} --set model.convolution=${conv} --set model.fused=true
             --set training.threads=${threads} --set distributed.tree=${tree})
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS ${ranks}
                                            FIXTURES_REQUIRED traj_residual_${conv} TIMEOUT 300)
  endforeach()
endforeach()

# Batch normalisation in a residual network (issue 13): each member's running statistics are its
# own, and training normalises with the batch's statistics, so fused or not, 1..3 ranks, 1 or 2
# threads and any tree still give one unfused rank's trajectory bit for bit.
set(TINY_BN ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny-bn.json)
poet_add_test(traj_bn_ref ${RUN_TRAIN} 1 ${CMAKE_CURRENT_BINARY_DIR}/traj/bn_ref -- ${TINY_BN})
set_tests_properties(traj_bn_ref PROPERTIES FIXTURES_SETUP traj_bn)
foreach(case 1:2:binary:gemm 2:1:kary:gemm 3:2:mpi:gemm 3:2:binary:onednn)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 ranks)
  list(GET parts 1 threads)
  list(GET parts 2 tree)
  list(GET parts 3 conv)
  set(name traj_bn_p${ranks}_t${threads}_${tree}_${conv})
  set(ref ${CMAKE_CURRENT_BINARY_DIR}/traj/bn_ref/trajectory)
  if(conv STREQUAL onednn) # the other algorithm rounds differently: its own unfused reference
    set(ref ${CMAKE_CURRENT_BINARY_DIR}/traj/bn_onednn_ref/trajectory)
  endif()
  add_test(NAME ${name} COMMAND ${RUN_TRAIN} ${ranks} ${CMAKE_CURRENT_BINARY_DIR}/traj/${name}
           --ref ${ref} -- ${TINY_BN} --set model.convolution=${conv} --set model.fused=true
           --set training.threads=${threads} --set distributed.tree=${tree})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS ${ranks}
                                          FIXTURES_REQUIRED traj_bn TIMEOUT 300)
endforeach()
poet_add_test(traj_bn_onednn_ref ${RUN_TRAIN} 1 ${CMAKE_CURRENT_BINARY_DIR}/traj/bn_onednn_ref --
              ${TINY_BN} --set model.convolution=onednn)
set_tests_properties(traj_bn_onednn_ref PROPERTIES FIXTURES_SETUP traj_bn)

# training.decay_bn_bias = false updates tensor by tensor (no decay on 1-D tensors): the ranges in
# stack layout must be right for stacks of one member and of two, so unfused on one rank and fused
# on two ranks agree bit for bit.
poet_add_test(traj_bn_nodecay_ref ${RUN_TRAIN} 1 ${CMAKE_CURRENT_BINARY_DIR}/traj/bn_nodecay_ref --
              ${TINY_BN} --set training.weight_decay=0.05 --set training.decay_bn_bias=false)
set_tests_properties(traj_bn_nodecay_ref PROPERTIES FIXTURES_SETUP traj_bn_nodecay)
add_test(NAME traj_bn_nodecay_p2_fused COMMAND ${RUN_TRAIN} 2
         ${CMAKE_CURRENT_BINARY_DIR}/traj/bn_nodecay_p2 --ref
         ${CMAKE_CURRENT_BINARY_DIR}/traj/bn_nodecay_ref/trajectory -- ${TINY_BN}
         --set training.weight_decay=0.05 --set training.decay_bn_bias=false
         --set model.fused=true --set training.threads=1)
set_tests_properties(traj_bn_nodecay_p2_fused PROPERTIES ENVIRONMENT "${POET_TEST_ENV}" PROCESSORS 2
                                                  FIXTURES_REQUIRED traj_bn_nodecay TIMEOUT 300)
