# PyTorch interop (tools/poet_torch.py, docs/pytorch.md): round trip bitwise, PyTorch forward vs
# poet eval (the reference network, and tests/configs/layers.json with every chain layer type),
# PyTorch-initialised members trained by poet, one SGD step vs poet's, the tool's error messages.
# Each case trains its own small run (driver: test_torch.py); all are skipped (exit 77) when
# python3-torch is not importable. The work directories are under interop/, not torch/: a directory
# named torch in the tests' working directory would be imported by `python3 -c 'import torch'` as
# an empty namespace package (bench/run.sh probes for torch that way).
set(TORCH_TEST /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_torch.py)
# Graph members (issue 13): tests/configs/tiny-bn.json, a residual ensemble with batchnorm (round
# trip, eval, one train-mode step, `poet predict` in eval mode, its error messages), and doc_resnet:
# the PyTorch snippet of docs/pytorch.md loads a poet-trained resnet-20 into a hand-written ResNet.
foreach(case round_trip eval scratch step errors round_trip:layers eval:layers round_trip:tiny-bn
             eval:tiny-bn step:tiny-bn predict:tiny-bn errors_bn:tiny-bn doc_resnet)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 what)
  set(config tiny)
  set(name torch_${what})
  if(case MATCHES ":")
    list(GET parts 1 config)
    set(name torch_${what}_${config})
  endif()
  poet_add_test(${name} ${TORCH_TEST} ${what} $<TARGET_FILE:poet>
                ${CMAKE_CURRENT_BINARY_DIR}/interop/${name}
                ${CMAKE_CURRENT_SOURCE_DIR}/configs/${config}.json)
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 480)
endforeach()

# PoetSGD against poet's own poet_sgd_step, bit for bit (the helper runs one step on a file).
poet_test_executable(torch_sgd_step ${CMAKE_CURRENT_SOURCE_DIR}/torch_sgd_step.c)
poet_add_test(torch_sgd ${TORCH_TEST} sgd $<TARGET_FILE:torch_sgd_step>
              ${CMAKE_CURRENT_BINARY_DIR}/interop/torch_sgd
              ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
set_tests_properties(torch_sgd PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
