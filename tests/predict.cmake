# poet predict (issue 16): a trained tiny ensemble applied to the Fashion-MNIST test set. Identical
# output on 1..3 ranks, probabilities summing to 1, eval's accuracy; every error case with its
# message and exit code (data shape 4, missing checkpoint 10, unwritable output 5, usage 2).
set(PREDICT ${CMAKE_CURRENT_SOURCE_DIR}/predict_test.sh $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE}
            ${CMAKE_CURRENT_BINARY_DIR}/predict ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
set(PREDICT_CKPT ${CMAKE_CURRENT_BINARY_DIR}/predict/ckpt/ckpt-00000050.h5)
set(PREDICT_IMAGES /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz)
poet_add_test(predict_setup bash ${PREDICT} setup)
set_tests_properties(predict_setup PROPERTIES FIXTURES_SETUP predict TIMEOUT 300)
poet_add_test(predict_consistency bash ${PREDICT} consistency)
set_tests_properties(predict_consistency PROPERTIES FIXTURES_REQUIRED predict TIMEOUT 600
                                                    PROCESSORS 3)

# Error cases (small.idx, written by the setup: 3 images of 20x20; the network takes 28x28).
set(PREDICT_SMALL ${CMAKE_CURRENT_BINARY_DIR}/predict/small.idx)
set(EXPECT bash ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh)
set(PREDICT_DIR ${CMAKE_CURRENT_BINARY_DIR}/predict)
poet_add_test(predict_error_shape ${EXPECT} 4
              "small.idx: images are 1x20x20 (CxHxW) but the network's input is 1x28x28"
              $<TARGET_FILE:poet> predict ${PREDICT_CKPT} --input ${PREDICT_SMALL}
              -o ${PREDICT_DIR}/small.h5)
poet_add_test(predict_error_shape_mpi3 ${EXPECT} 4
              "small.idx: images are 1x20x20 (CxHxW) but the network's input is 1x28x28"
              ${MPIEXEC_EXECUTABLE} -np 3 --oversubscribe $<TARGET_FILE:poet> predict ${PREDICT_CKPT} --input ${PREDICT_SMALL}
              -o ${PREDICT_DIR}/small.h5)
poet_add_test(predict_error_no_checkpoint ${EXPECT} 10
              "no-such.h5: cannot open checkpoint: No such file or directory"
              $<TARGET_FILE:poet> predict ${PREDICT_DIR}/no-such.h5 --input ${PREDICT_IMAGES}
              -o ${PREDICT_DIR}/x.h5)
poet_add_test(predict_error_no_latest ${EXPECT} 10 "no checkpoint to predict with"
              $<TARGET_FILE:poet> predict ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json
              --set "output.checkpoint_dir=\"${PREDICT_DIR}/empty\"" --input ${PREDICT_IMAGES}
              -o ${PREDICT_DIR}/x.h5)
poet_add_test(predict_error_output ${EXPECT} 5
              "no-dir/out.h5: cannot create the output file: No such file or directory"
              $<TARGET_FILE:poet> predict ${PREDICT_CKPT} --input ${PREDICT_IMAGES}
              -o ${PREDICT_DIR}/no-dir/out.h5)
poet_add_test(predict_error_output_csv ${EXPECT} 5
              "no-dir/out.csv: cannot create the output file: No such file or directory"
              $<TARGET_FILE:poet> predict ${PREDICT_CKPT} --input ${PREDICT_IMAGES}
              -o ${PREDICT_DIR}/no-dir/out.csv)
poet_add_test(predict_error_format ${EXPECT} 2 "expected a name ending in .h5, .hdf5 or .csv"
              $<TARGET_FILE:poet> predict ${PREDICT_CKPT} --input ${PREDICT_IMAGES}
              -o ${PREDICT_DIR}/out.txt)
poet_add_test(predict_error_no_input ${EXPECT} 2 "predict: missing --input IMAGES"
              $<TARGET_FILE:poet> predict ${PREDICT_CKPT} -o ${PREDICT_DIR}/out.h5)
set_tests_properties(predict_error_shape predict_error_shape_mpi3 predict_error_no_checkpoint
                     predict_error_output predict_error_output_csv predict_error_format
                     PROPERTIES FIXTURES_REQUIRED predict TIMEOUT 120)
set_tests_properties(predict_error_shape_mpi3 PROPERTIES PROCESSORS 3)
