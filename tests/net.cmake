# The oneDNN stack: every member's logits and gradients against the double reference, and the
# joint-loss gradient computed as M separate graphs, as one fused graph and by the reference.
# All of these link poetbase alone: the network and its kernels build and run without MPI.
poet_base_test_executable(test_net ${CMAKE_CURRENT_SOURCE_DIR}/test_net.c)
poet_add_test(net_vs_reference $<TARGET_FILE:test_net>)

# im2col and col2im against their definitions, AVX-512 runs against the portable loops bitwise.
poet_base_test_executable(test_gemmconv ${CMAKE_CURRENT_SOURCE_DIR}/test_gemmconv.c)
poet_add_test(gemmconv $<TARGET_FILE:test_gemmconv>)

# The AVX-512 narrow products (the first convolution's) against double products; skipped (77)
# on CPUs without AVX-512, where sgemm runs them and net_vs_reference covers that path.
poet_base_test_executable(test_narrowgemm ${CMAKE_CURRENT_SOURCE_DIR}/test_narrowgemm.c)
poet_add_test(narrowgemm $<TARGET_FILE:test_narrowgemm>)
set_tests_properties(narrowgemm PROPERTIES SKIP_RETURN_CODE 77)

# Global average pooling with relu (the chains' last layers) against its definition, AVX-512
# against portable bitwise.
poet_base_test_executable(test_pool ${CMAKE_CURRENT_SOURCE_DIR}/test_pool.c)
poet_add_test(pool $<TARGET_FILE:test_pool>)

poet_base_test_executable(test_joint_gradient ${CMAKE_CURRENT_SOURCE_DIR}/test_joint_gradient.c)
poet_add_test(joint_gradient $<TARGET_FILE:test_joint_gradient>)

# Signals arriving while members compute (Slurm's SIGTERM/SIGUSR1) must not corrupt anything.
poet_base_test_executable(test_net_signals ${CMAKE_CURRENT_SOURCE_DIR}/test_net_signals.c)
poet_add_test(net_signals $<TARGET_FILE:test_net_signals>)
set_tests_properties(net_signals PROPERTIES PROCESSORS 2)

# Synchronised batch normalisation (distributed.sync_batchnorm): two stacks on two threads, each a
# shard of the batch, equal one stack holding the whole batch (logits, gradients, statistics).
poet_base_test_executable(test_bnsync ${CMAKE_CURRENT_SOURCE_DIR}/test_bnsync.c)
poet_add_test(bnsync $<TARGET_FILE:test_bnsync>)

# The lanes' buffer pools: the planner never lets buffers alive together overlap, and a ResNet's
# backward buffers take a fraction of their separate sizes (the memory of issue 13).
poet_base_test_executable(test_bufplan ${CMAKE_CURRENT_SOURCE_DIR}/test_bufplan.c)
poet_add_test(bufplan $<TARGET_FILE:test_bufplan>)
