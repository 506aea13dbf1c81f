# Numeric building blocks: architecture plans, the double-precision reference, the joint loss and
# the optimiser. Each test is serial and runs in well under a second.
poet_base_test_executable(test_arch ${CMAKE_CURRENT_SOURCE_DIR}/test_arch.c)
poet_add_test(arch $<TARGET_FILE:test_arch>)

if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_reference.c)
  poet_base_test_executable(test_reference ${CMAKE_CURRENT_SOURCE_DIR}/test_reference.c)
  poet_add_test(reference_gradcheck $<TARGET_FILE:test_reference>)
endif()
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_loss.c)
  poet_base_test_executable(test_loss ${CMAKE_CURRENT_SOURCE_DIR}/test_loss.c)
  poet_add_test(loss $<TARGET_FILE:test_loss>)
endif()
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_optim.c)
  poet_base_test_executable(test_optim ${CMAKE_CURRENT_SOURCE_DIR}/test_optim.c)
  poet_add_test(optim $<TARGET_FILE:test_optim>)
endif()
