# Issue 2's acceptance: 200 iterations of the default config (10 reference networks, B=200, lr 0.5,
# momentum 0.9) on Fashion-MNIST bring the ensemble loss well below ln 10 = 2.30.
poet_add_test(learn_fashion_mnist ${CMAKE_CURRENT_SOURCE_DIR}/check_learning.sh $<TARGET_FILE:poet>
              ${CMAKE_CURRENT_BINARY_DIR}/learn 1.2 0.60 --
              ${CMAKE_SOURCE_DIR}/configs/fashion-mnist.json --set training.iterations=200
              --set training.eval_every=0 --set output.checkpoint_every=0)
