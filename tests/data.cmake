# rng and data modules: counter-based random numbers; IDX loading and deterministic batches.
poet_test_executable(test_rng ${CMAKE_CURRENT_SOURCE_DIR}/test_rng.c)
poet_add_test(rng $<TARGET_FILE:test_rng>)

# The data test writes its IDX fixtures into the build directory; the real Fashion-MNIST checks
# run only when POET_DATA_DIR holds the files.
poet_test_executable(test_data ${CMAKE_CURRENT_SOURCE_DIR}/test_data.c)
poet_add_test(data $<TARGET_FILE:test_data> ${POET_DATA_DIR})

# Images of another shape than the network's input (fixed by the training images) are a data error
# naming the file and both shapes, for train and eval on 1 and 3 ranks (issue 17, item 1).
poet_add_test(data_shape_mismatch bash ${CMAKE_CURRENT_SOURCE_DIR}/test_shapes.sh
              $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE} ${CMAKE_CURRENT_BINARY_DIR}/data_shapes)
set_tests_properties(data_shape_mismatch PROPERTIES TIMEOUT 300 PROCESSORS 3)

# CIFAR binary and HDF5 data sets written by the test in their exact formats: exact read-back,
# per-channel normalisation, format inference and every error case (issue 14).
poet_test_executable(test_data_formats ${CMAKE_CURRENT_SOURCE_DIR}/test_data_formats.c)
poet_add_test(data_formats $<TARGET_FILE:test_data_formats>)
set_tests_properties(data_formats PROPERTIES TIMEOUT 120)

# The formats end to end: Fashion-MNIST converted to HDF5 trains bitwise as from IDX (1 and 3
# ranks), a CIFAR-10 set and its HDF5 conversion train bitwise alike, and bad data exits 4.
poet_add_test(data_e2e bash ${CMAKE_CURRENT_SOURCE_DIR}/test_data_e2e.sh $<TARGET_FILE:poet>
              ${MPIEXEC_EXECUTABLE} ${CMAKE_CURRENT_BINARY_DIR}/data_e2e ${POET_DATA_DIR})
set_tests_properties(data_e2e PROPERTIES TIMEOUT 600 PROCESSORS 3)

# data.mean / data.std arrays: each element checked like the number, lengths must agree (exit 3).
poet_cli_error(data_mean_element 3 "data.mean[1]: expected number in [-1, 2], got 7"
               ${POET} train ${TINY} --set data.mean=[0.5,7,0.5] ${SET_DIR})
poet_cli_error(data_std_length 3 "data.std: expected 3 values, one per channel as data.mean, got 2"
               ${POET} train ${TINY} --set data.mean=[0.5,0.5,0.5] --set data.std=[1,1] ${SET_DIR})
poet_cli_error(data_std_empty 3 "data.std: expected a number or an array of 1..16 numbers"
               ${POET} train ${TINY} --set data.std=[] ${SET_DIR})
poet_cli_error(data_layout_bad 3 "data.layout: expected one of \"auto\", \"NCHW\", \"NHWC\""
               ${POET} train ${TINY} --set data.layout=CHW ${SET_DIR})

# Prefetch (data.prefetch): batches built by a separate thread give the run bit for bit, on 1 and
# 3 ranks (against traj_ref, the run without prefetch), in the stale mode (two batches in flight),
# and across a SIGTERM + resume (the thread blocks signals; the training thread stops cleanly).
set(DATA_RUN_TRAIN ${CMAKE_CURRENT_SOURCE_DIR}/run_train.sh $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE})
set(DATA_TRAJ ${CMAKE_CURRENT_BINARY_DIR}/data_prefetch)
foreach(ranks 1 3)
  poet_add_test(data_prefetch_p${ranks} ${DATA_RUN_TRAIN} ${ranks} ${DATA_TRAJ}/p${ranks}
                --ref ${CMAKE_CURRENT_BINARY_DIR}/traj/ref/trajectory --
                ${TINY} --set data.prefetch=2 --set distributed.tree=kary --set distributed.arity=3)
  set_tests_properties(data_prefetch_p${ranks} PROPERTIES PROCESSORS ${ranks} TIMEOUT 300
                                                          FIXTURES_REQUIRED traj_ref)
endforeach()
poet_add_test(data_prefetch_stale_ref ${DATA_RUN_TRAIN} 2 ${DATA_TRAJ}/stale_ref --
              ${TINY} --set distributed.overlap=stale)
set_tests_properties(data_prefetch_stale_ref PROPERTIES FIXTURES_SETUP data_stale PROCESSORS 2
                                                        TIMEOUT 300)
poet_add_test(data_prefetch_stale ${DATA_RUN_TRAIN} 2 ${DATA_TRAJ}/stale
              --ref ${DATA_TRAJ}/stale_ref/trajectory --
              ${TINY} --set distributed.overlap=stale --set data.prefetch=3)
set_tests_properties(data_prefetch_stale PROPERTIES FIXTURES_REQUIRED data_stale PROCESSORS 2
                                                    TIMEOUT 300)
poet_add_test(data_prefetch_resume ${CMAKE_CURRENT_SOURCE_DIR}/resume_test.sh $<TARGET_FILE:poet>
              ${MPIEXEC_EXECUTABLE} term 2 2 ${DATA_TRAJ}/resume ${TINY} --set data.prefetch=2
              --set training.iterations=240 --set output.checkpoint_every=30)
set_tests_properties(data_prefetch_resume PROPERTIES PROCESSORS 2 TIMEOUT 600)

# Augmentation (data.augment: crop with zero padding, horizontal flip) drawn by (seed, epoch,
# image): the same batches on 1, 2 and 3 ranks and across a SIGTERM + resume, bit for bit; and
# it does change the run (the reference without augmentation differs).
set(AUGMENT --set data.augment={\"crop_padding\":4,\"flip\":true})
poet_add_test(data_augment_ref ${DATA_RUN_TRAIN} 1 ${DATA_TRAJ}/augment_ref -- ${TINY} ${AUGMENT})
set_tests_properties(data_augment_ref PROPERTIES FIXTURES_SETUP data_augment TIMEOUT 300)
foreach(ranks 2 3)
  poet_add_test(data_augment_p${ranks} ${DATA_RUN_TRAIN} ${ranks} ${DATA_TRAJ}/augment_p${ranks}
                --ref ${DATA_TRAJ}/augment_ref/trajectory -- ${TINY} ${AUGMENT}
                --set data.prefetch=1)
  set_tests_properties(data_augment_p${ranks} PROPERTIES PROCESSORS ${ranks} TIMEOUT 300
                                                         FIXTURES_REQUIRED data_augment)
endforeach()
poet_add_test(data_augment_changes bash -c
              "! cmp -s ${DATA_TRAJ}/augment_ref/trajectory ${CMAKE_CURRENT_BINARY_DIR}/traj/ref/trajectory")
set_tests_properties(data_augment_changes PROPERTIES FIXTURES_REQUIRED "data_augment;traj_ref")
poet_add_test(data_augment_resume ${CMAKE_CURRENT_SOURCE_DIR}/resume_test.sh $<TARGET_FILE:poet>
              ${MPIEXEC_EXECUTABLE} term 3 2 ${DATA_TRAJ}/augment_resume ${TINY} ${AUGMENT}
              --set training.iterations=240 --set output.checkpoint_every=30)
set_tests_properties(data_augment_resume PROPERTIES PROCESSORS 3 TIMEOUT 600)

# Validation split (data.validation): periodic evaluations on images held out of the training set,
# chosen from the seed alike on every rank: 1 and 3 ranks train bitwise alike.
poet_add_test(data_validation_ref ${DATA_RUN_TRAIN} 1 ${DATA_TRAJ}/validation_ref --
              ${TINY} --set data.validation=777 --set training.eval_every=20)
set_tests_properties(data_validation_ref PROPERTIES FIXTURES_SETUP data_validation TIMEOUT 300)
poet_add_test(data_validation_p3 ${DATA_RUN_TRAIN} 3 ${DATA_TRAJ}/validation_p3
              --ref ${DATA_TRAJ}/validation_ref/trajectory --
              ${TINY} --set data.validation=777 --set training.eval_every=20)
set_tests_properties(data_validation_p3 PROPERTIES FIXTURES_REQUIRED data_validation PROCESSORS 3
                                                   TIMEOUT 300)
poet_cli_error(data_validation_bad 3 "data.validation: expected a whole number of images or a fraction below 1, got 2.5"
               ${POET} train ${TINY} --set data.validation=2.5 ${SET_DIR})
