# Issue 2's acceptance: the default config (10 reference networks, B=200, lr 0.5, momentum 0.9) on
# Fashion-MNIST brings the ensemble loss well below ln 10 = 2.30. Since issue 16 the config uses
# Fashion-MNIST's own normalisation (mean 0.2860, std 0.3530), which starts slower: after 200
# iterations 0.558 test accuracy (MNIST's 0.1307/0.3081 gave 0.680), after the quick start's whole
# epoch (300) 0.691 (0.702). The test runs that epoch.
poet_add_test(learn_fashion_mnist ${CMAKE_CURRENT_SOURCE_DIR}/check_learning.sh $<TARGET_FILE:poet>
              ${CMAKE_CURRENT_BINARY_DIR}/learn 1.2 0.60 --
              ${CMAKE_SOURCE_DIR}/configs/fashion-mnist.json --set training.iterations=300
              --set training.eval_every=0 --set output.checkpoint_every=0)

# A small residual ensemble with batch normalisation (tests/configs/tiny-bn.json, issue 13) learns:
# 300 iterations of B = 40 bring the loss from ln 10 to ~0.70 and the test-set accuracy, with
# the running statistics, to ~0.74 (measured); the bounds leave room for other machines.
poet_add_test(learn_residual_bn ${CMAKE_CURRENT_SOURCE_DIR}/check_learning.sh $<TARGET_FILE:poet>
              ${CMAKE_CURRENT_BINARY_DIR}/learn_residual_bn 0.9 0.65 --
              ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny-bn.json --set training.iterations=300
              --set output.checkpoint_every=0)
set_tests_properties(learn_residual_bn PROPERTIES TIMEOUT 300)

# The shipped residual config (configs/fashion-mnist-resnet.json; its 24-epoch result is in
# docs/results.md) parses, its network builds on Fashion-MNIST's 1x28x28 images, and it trains:
# 2 iterations and the final evaluation, not the run itself (80 minutes on 2 cores).
poet_add_test(config_fashion_mnist_resnet ${CMAKE_CURRENT_SOURCE_DIR}/run_train.sh
              $<TARGET_FILE:poet> ${MPIEXEC_EXECUTABLE} 1
              ${CMAKE_CURRENT_BINARY_DIR}/config_fashion_mnist_resnet --
              ${CMAKE_SOURCE_DIR}/configs/fashion-mnist-resnet.json --set training.iterations=2
              --set output.checkpoint_every=0)
set_tests_properties(config_fashion_mnist_resnet PROPERTIES PROCESSORS 2 TIMEOUT 300)
