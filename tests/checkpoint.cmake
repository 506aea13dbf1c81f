# Checkpoints: the suite (round trip, fields, pruning, bad files, resume, failed writes) with one and
# with three ranks, and the elastic case: written by three ranks, read back by two and by one.
poet_test_executable(test_checkpoint ${CMAKE_CURRENT_SOURCE_DIR}/test_checkpoint.c)
poet_add_test(checkpoint $<TARGET_FILE:test_checkpoint>)
poet_add_mpi_test(checkpoint_mpi3 3 $<TARGET_FILE:test_checkpoint>)

set(POET_CKPT_ELASTIC_DIR ${CMAKE_CURRENT_BINARY_DIR}/ckpt-elastic)
poet_add_mpi_test(checkpoint_elastic_write 3 $<TARGET_FILE:test_checkpoint> write
                  ${POET_CKPT_ELASTIC_DIR})
set_tests_properties(checkpoint_elastic_write PROPERTIES FIXTURES_SETUP ckpt_elastic)
poet_add_mpi_test(checkpoint_elastic 2 $<TARGET_FILE:test_checkpoint> read ${POET_CKPT_ELASTIC_DIR})
poet_add_test(checkpoint_elastic_serial $<TARGET_FILE:test_checkpoint> read ${POET_CKPT_ELASTIC_DIR})
set_tests_properties(checkpoint_elastic checkpoint_elastic_serial PROPERTIES
                     FIXTURES_REQUIRED ckpt_elastic)

# Non-finite weights (issue 17): never written (exit-11 class error naming member and tensor), and a
# file holding one is refused by read and inspect even when its checksum matches.
poet_add_test(checkpoint_nonfinite $<TARGET_FILE:test_checkpoint> nonfinite
              ${CMAKE_CURRENT_BINARY_DIR}/ckpt-nonfinite)
poet_add_mpi_test(checkpoint_nonfinite_mpi3 3 $<TARGET_FILE:test_checkpoint> nonfinite
                  ${CMAKE_CURRENT_BINARY_DIR}/ckpt-nonfinite-p3)
set_tests_properties(checkpoint_nonfinite checkpoint_nonfinite_mpi3 PROPERTIES TIMEOUT 120)

# A full disk (issue 17): exit 5 with the cause, no .tmp left, earlier checkpoints and log rows
# intact, on 1 and 3 ranks; root only (mounts a tmpfs), skipped (77) otherwise. POET_IO_TIMEOUT=20
# bounds a stuck collective, the TIMEOUT the whole test.
foreach(case checkpoints:1 checkpoints:3 midwrite:1 midwrite:3 log:1 log:3)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 where)
  list(GET parts 1 ranks)
  set(name disk_full_${where}_p${ranks})
  poet_add_test(${name} bash ${CMAKE_CURRENT_SOURCE_DIR}/disk_full.sh $<TARGET_FILE:poet>
                ${MPIEXEC_EXECUTABLE} ${ranks} ${CMAKE_CURRENT_BINARY_DIR}/disk-full/${name}
                ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json ${where})
  set_tests_properties(${name} PROPERTIES PROCESSORS ${ranks} TIMEOUT 150 SKIP_RETURN_CODE 77)
endforeach()

# Identity (issue 16): a checkpoint missing its config, format version, a member's architecture or
# arch_index, or holding config "{}", is refused naming the field (read and inspect, 1 and 3 ranks);
# on the command line `poet inspect` exits 10 with that message (a member's field: that member's
# line is BAD). The tensor groups track creation
# order: h5dump --sort_by=creation_order lists them in layer order.
set(POET_CKPT_IDENTITY_DIR ${CMAKE_CURRENT_BINARY_DIR}/ckpt-identity)
poet_add_test(checkpoint_identity $<TARGET_FILE:test_checkpoint> identity ${POET_CKPT_IDENTITY_DIR})
poet_add_mpi_test(checkpoint_identity_mpi3 3 $<TARGET_FILE:test_checkpoint> identity
                  ${CMAKE_CURRENT_BINARY_DIR}/ckpt-identity-p3)
set_tests_properties(checkpoint_identity PROPERTIES FIXTURES_SETUP ckpt_identity TIMEOUT 120)
set_tests_properties(checkpoint_identity_mpi3 PROPERTIES TIMEOUT 120)
foreach(case "config:attribute config of / is missing"
             "format_version:not a poet checkpoint (no format_version attribute)"
             "architecture:1 of 5 members do not verify"
             "arch_index:1 of 5 members do not verify")
  string(FIND "${case}" ":" colon)
  string(SUBSTRING "${case}" 0 ${colon} field)
  math(EXPR colon "${colon} + 1")
  string(SUBSTRING "${case}" ${colon} -1 message)
  poet_add_test(checkpoint_identity_cli_${field} bash ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh 10
                "no-${field}.h5: ${message}" $<TARGET_FILE:poet> inspect
                ${POET_CKPT_IDENTITY_DIR}/no-${field}.h5)
  set_tests_properties(checkpoint_identity_cli_${field} PROPERTIES FIXTURES_REQUIRED ckpt_identity)
endforeach()
poet_add_test(checkpoint_creation_order bash ${CMAKE_CURRENT_SOURCE_DIR}/check_creation_order.sh
              ${POET_CKPT_IDENTITY_DIR}/ckpt-00000300.h5)
set_tests_properties(checkpoint_creation_order PROPERTIES FIXTURES_REQUIRED ckpt_identity)
