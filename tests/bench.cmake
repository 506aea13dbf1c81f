# bench/run.sh --smoke: the benchmark script, gemm_peak, train_flops and the PyTorch reference (when
# torch imports) still run and still read poet's summary lines. No timing is asserted, ever.
poet_add_test(bench_smoke bash ${CMAKE_SOURCE_DIR}/bench/run.sh --smoke --no-build
              --build ${CMAKE_BINARY_DIR} --out ${CMAKE_CURRENT_BINARY_DIR}/bench_smoke.txt)
set_tests_properties(bench_smoke PROPERTIES PROCESSORS 2 TIMEOUT 300)

# bench/resnet20.sh --smoke: the ResNet-20 comparison's pieces (gemm_peak, train_flops, stack_time
# with one algorithm and its memory line, pytorch_resnet.py per layout when torch imports) still fit
# together; 2 members of 8 images, one step each. No timing is asserted.
poet_add_test(bench_resnet20_smoke bash ${CMAKE_SOURCE_DIR}/bench/resnet20.sh --smoke --no-build
              --build ${CMAKE_BINARY_DIR} --out ${CMAKE_CURRENT_BINARY_DIR}/bench_resnet20_smoke.txt)
set_tests_properties(bench_resnet20_smoke PROPERTIES PROCESSORS 2 TIMEOUT 300)
