# data.mean / data.std "auto" (issue 16): computed from the training set, stored in the checkpoint,
# the same training as the stored numbers given by hand, reused on resume, eval and predict.
poet_add_test(normalise_auto bash ${CMAKE_CURRENT_SOURCE_DIR}/normalise_test.sh $<TARGET_FILE:poet>
              ${CMAKE_CURRENT_BINARY_DIR}/normalise ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
set_tests_properties(normalise_auto PROPERTIES TIMEOUT 300)
