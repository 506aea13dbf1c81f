# PyTorch interop (tools/poet_torch.py, docs/pytorch.md): round trip bitwise, PyTorch forward vs
# poet eval, PyTorch-initialised members trained by poet, one SGD step vs poet's. Each case trains
# its own small run; all are skipped (exit 77) when python3-torch is not importable.
foreach(case round_trip eval scratch step)
  poet_add_test(torch_${case} /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_torch.py ${case}
                $<TARGET_FILE:poet> ${CMAKE_CURRENT_BINARY_DIR}/torch/${case}
                ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
  set_tests_properties(torch_${case} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
