# The command line: every bad input gets one clear line naming what is wrong and a documented exit code.
set(EXPECT ${CMAKE_CURRENT_SOURCE_DIR}/expect_error.sh)
set(POET $<TARGET_FILE:poet>)
set(TINY ${CMAKE_CURRENT_SOURCE_DIR}/configs/tiny.json)
set(FMNIST ${POET_DATA_DIR})

# Every error case ends in seconds; the timeout keeps a hang (a rank left waiting) from blocking ctest.
function(poet_cli_error name code text)
  poet_add_test(cli_${name} ${EXPECT} ${code} "${text}" ${ARGN})
  set_tests_properties(cli_${name} PROPERTIES TIMEOUT 120)
endfunction()

poet_add_test(cli_help ${POET} --help)
set_tests_properties(cli_help PROPERTIES PASS_REGULAR_EXPRESSION "usage: poet <command>")
poet_add_test(cli_version ${POET} --version)
set_tests_properties(cli_version PROPERTIES PASS_REGULAR_EXPRESSION "^poet [0-9]+\\.[0-9]+\\.[0-9]+")

poet_cli_error(no_command 2 "poet: missing command" ${POET})
poet_cli_error(unknown_command 2 "poet: unknown command 'frobnicate'" ${POET} frobnicate)
poet_cli_error(train_no_config 2 "poet: train: missing CONFIG" ${POET} train)
poet_cli_error(train_bad_option 2 "unknown or incomplete option '--bogus'" ${POET} train ${TINY} --bogus)
poet_cli_error(train_two_configs 2 "more than one config file" ${POET} train ${TINY} ${TINY})
poet_cli_error(stop_after_bad 2 "--stop-after: expected an integer >= 1, got 'x'" ${POET} train ${TINY} --stop-after x)
poet_cli_error(resume_and_resume_from 2 "train: --resume and --resume-from ckpt.h5 exclude each other"
               ${POET} train ${TINY} --resume --resume-from ckpt.h5)
poet_cli_error(overwrite_and_resume 2 "train: --overwrite starts over, --resume continues"
               ${POET} train ${TINY} --resume --overwrite)
poet_cli_error(set_malformed 2 "--set: expected KEY=VALUE, got 'training.lr'" ${POET} train ${TINY} --set training.lr)
poet_cli_error(inspect_no_file 2 "inspect: expected exactly one checkpoint FILE" ${POET} inspect)
poet_cli_error(report_no_log 2 "report: expected at least one LOG.h5" ${POET} report)

poet_cli_error(config_missing 3 "does-not-exist.json: cannot read config: No such file or directory"
               ${POET} train does-not-exist.json)
poet_cli_error(config_batch_negative 3 "training.batch_size: expected integer >= 1, got -5"
               ${POET} train ${TINY} --set training.batch_size=-5)
poet_cli_error(config_unknown_key 3 "training.batchsize: unknown key, did you mean training.batch_size?"
               ${POET} train ${TINY} --set training.batchsize=5)
poet_cli_error(config_bad_tree 3 "distributed.tree: expected"
               ${POET} train ${TINY} --set distributed.tree=ring)

# Every run that gets past its config holds the lock of its checkpoint directory (docs/cli.md), so
# tests that may run at the same time use directories of their own.

poet_cli_error(data_missing 4 "/nonexistent/train.gz: cannot open"
               ${POET} train ${TINY} --set data.train_images=/nonexistent/train.gz
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_data_missing\")
poet_cli_error(data_bad_magic 4 "bad magic"
               ${POET} train ${TINY} --set data.train_images=${FMNIST}/train-labels-idx1-ubyte.gz
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_data_bad_magic\")
poet_cli_error(data_count_mismatch 4 "labels but"
               ${POET} train ${TINY} --set data.train_labels=${FMNIST}/t10k-labels-idx1-ubyte.gz
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_data_count_mismatch\")
poet_cli_error(data_label_range 4 "is >= classes"
               ${POET} train ${TINY} --set data.classes=5 --set model.architecture=reference
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_data_label_range\")

# Graph architectures (issue 13): a cycle, an add of two shapes.
set(CONV_A "{\"type\":\"conv\",\"out_channels\":4,\"kernel\":3,\"padding\":1,\"id\":\"a\"}")
set(ADD_AB "{\"type\":\"add\",\"inputs\":[\"a\",\"b\"]},{\"type\":\"linear\",\"out_features\":10}")
poet_cli_error(arch_cycle 3 "model.architecture[0].input: expected the id of an earlier layer, got \"b\", layer 1's, which comes later"
               ${POET} train ${TINY} --set "model.architecture=[{\"type\":\"relu\",\"input\":\"b\"},{\"type\":\"relu\",\"id\":\"b\"},{\"type\":\"linear\",\"out_features\":10}]")
poet_cli_error(arch_add_shapes 3 "model.architecture[2].inputs: add expects inputs of one shape, got 4x28x28 (layer 0) and 4x14x14 (layer 1)"
               ${POET} train ${TINY} --set "model.architecture=[${CONV_A},{\"type\":\"conv\",\"out_channels\":4,\"kernel\":3,\"stride\":2,\"padding\":1,\"id\":\"b\"},${ADD_AB}]")


# Several ranks: errors every rank shares are printed once; a rank that fails alone stops them all.
poet_cli_error(mpi_more_ranks_than_members 3 "5 ranks in groups of 1 make 5 member groups, but the 4 members cannot be spread over them"
               ${MPIEXEC_EXECUTABLE} -np 5 --oversubscribe ${POET} train ${TINY} --set distributed.group_size=1
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_mpi_more_ranks_than_members\")
poet_cli_error(mpi_data_missing 4 "cannot open"
               ${MPIEXEC_EXECUTABLE} -np 2 --oversubscribe ${POET} train ${TINY}
               --set data.test_images=/nonexistent/t10k.gz
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_mpi_data_missing\")
poet_add_test(cli_mpi_rank_failure ${EXPECT} nz "rank 2/3" env POET_FAULT_RANK=2 POET_FAULT_ITERATION=5
              ${MPIEXEC_EXECUTABLE} -np 3 --oversubscribe ${POET} train ${TINY}
              --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_fault\" --overwrite)
# "within seconds": the failing rank's message and every rank's exit, long before the 50 iterations.
set_tests_properties(cli_mpi_rank_failure PROPERTIES TIMEOUT 60)

# eval, inspect and report on the files of a real run (the trajectory reference's).
set(REF_DIR ${CMAKE_CURRENT_BINARY_DIR}/traj/ref/ckpt)
poet_add_test(cli_eval ${POET} eval ${TINY} --set output.checkpoint_dir=\"${REF_DIR}\")
set_tests_properties(cli_eval PROPERTIES FIXTURES_REQUIRED traj_ref
                     PASS_REGULAR_EXPRESSION "ensemble: accuracy 0\\.[0-9]+  nll [0-9.]+")
poet_add_test(cli_eval_mpi ${MPIEXEC_EXECUTABLE} -np 2 --oversubscribe ${POET} eval ${TINY}
              --set output.checkpoint_dir=\"${REF_DIR}\")
set_tests_properties(cli_eval_mpi PROPERTIES FIXTURES_REQUIRED traj_ref PROCESSORS 2
                     PASS_REGULAR_EXPRESSION "member +3: accuracy")
poet_cli_error(eval_no_checkpoint 10 "no checkpoint to evaluate"
               ${POET} eval ${TINY} --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/empty\")
poet_add_test(cli_inspect ${POET} inspect ${REF_DIR}/ckpt-00000050.h5)
set_tests_properties(cli_inspect PROPERTIES FIXTURES_REQUIRED traj_ref
                     PASS_REGULAR_EXPRESSION "0003 +8470 +0x[0-9a-f]+ 0x[0-9a-f]+ OK")
poet_cli_error(inspect_not_hdf5 10 "${TINY}" ${POET} inspect ${TINY})
poet_add_test(cli_report ${POET} report ${REF_DIR}/log.h5)
set_tests_properties(cli_report PROPERTIES FIXTURES_REQUIRED traj_ref
                     PASS_REGULAR_EXPRESSION "iterations +50")
poet_add_test(cli_report_csv ${POET} report ${REF_DIR}/log.h5 ${REF_DIR}/log.h5 --csv)
set_tests_properties(cli_report_csv PROPERTIES FIXTURES_REQUIRED traj_ref
                     PASS_REGULAR_EXPRESSION "^[a-z_]+(,[a-z_0-9]+)+\n")
poet_cli_error(report_foreign 4 "not a poet loss log" ${POET} report ${REF_DIR}/ckpt-00000050.h5)
set_tests_properties(cli_report_foreign PROPERTIES FIXTURES_REQUIRED traj_ref)
poet_cli_error(report_not_hdf5 4 "cannot open as HDF5" ${POET} report ${TINY})

# A checkpoint that cannot be written fails on every rank alike: one message, exit 5, no abort.
poet_add_test(cli_mpi_checkpoint_dir_unwritable ${EXPECT} 5
              "cannot create checkpoint directory ${TINY}/ckpt" ${MPIEXEC_EXECUTABLE} -np 2
              --oversubscribe ${POET} train ${TINY} --set training.iterations=3
              --set output.log_file=\"${CMAKE_CURRENT_BINARY_DIR}/cli_unwritable.h5\"
              --set output.checkpoint_dir=\"${TINY}/ckpt\")
set_tests_properties(cli_mpi_checkpoint_dir_unwritable PROPERTIES PROCESSORS 2)

# --set never weakens the checks: the file must be complete JSON on its own (issue 17, item 3), and a
# VALUE is one whole JSON value or a bare word (a string), never the valid beginning of something.
# The checkpoint directory is fresh, so a regression (the run going ahead) trains one iteration.
set(BAD_CONFIGS ${CMAKE_CURRENT_SOURCE_DIR}/configs/bad)
set(SET_DIR --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_set_checks\")
poet_cli_error(set_file_trailing_garbage 3 "trailing-garbage.json: invalid JSON near line 2"
               ${POET} train ${BAD_CONFIGS}/trailing-garbage.json --set training.lr=0.1 ${SET_DIR})
poet_cli_error(set_file_two_objects 3 "two-objects.json: invalid JSON near line 2"
               ${POET} train ${BAD_CONFIGS}/two-objects.json --set training.lr=0.1 ${SET_DIR})
poet_cli_error(set_file_nul_byte 3 "nul-byte.json: invalid JSON near line 1: the file contains a NUL byte"
               ${POET} train ${BAD_CONFIGS}/nul-byte.json --set training.lr=0.1 ${SET_DIR})
# "bias" only on conv and linear layers (a batchnorm's shift is its bias, and it has no switch).
poet_cli_error(config_bias_on_batchnorm 3
               "bias-on-batchnorm.json: model.architecture[1].bias: expected no \"bias\" on a batchnorm layer (only conv and linear have one), got false"
               ${POET} train ${BAD_CONFIGS}/bias-on-batchnorm.json ${SET_DIR})
poet_cli_error(set_number_garbage 3
               "--set training.iterations=7abc: VALUE is not one complete JSON value (unexpected text at 'abc')"
               ${POET} train ${TINY} --set training.iterations=7abc ${SET_DIR})
poet_cli_error(set_two_dots 3
               "--set training.lr=0.1.5: VALUE is not one complete JSON value (unexpected text at '.5')"
               ${POET} train ${TINY} --set training.lr=0.1.5 --set training.iterations=1 ${SET_DIR})
poet_cli_error(set_unclosed_string 3 "--set output.run_name=\"tiny: VALUE is not one complete JSON value (unexpected"
               ${POET} train ${TINY} --set output.run_name=\"tiny --set training.iterations=1 ${SET_DIR})
poet_cli_error(set_bare_word_string 3 "training.iterations: expected integer >= 0, got \"seven\""
               ${POET} train ${TINY} --set training.iterations=seven ${SET_DIR})

# Normalisation constants that would make non-finite or absurd inputs (issue 17, item 4), and a
# tree arity beyond what the reduce tree supports (item 8), are config errors naming the key.
poet_cli_error(config_mean_huge 3 "data.mean: expected number in [-1, 2], got 1e+308"
               ${POET} train ${TINY} --set data.mean=1e308 --set training.iterations=1 ${SET_DIR})
poet_cli_error(config_std_tiny 3 "data.std: expected number in [0.001, 1000], got 1e-300"
               ${POET} train ${TINY} --set data.std=1e-300 --set training.iterations=1 ${SET_DIR})
poet_cli_error(config_std_negative 3 "data.std: expected number in [0.001, 1000], got -1"
               ${POET} train ${TINY} --set data.std=-1 --set training.iterations=1 ${SET_DIR})
poet_cli_error(config_arity_huge 3 "distributed.arity: expected integer between 2 and 64, got 2147483647"
               ${POET} train ${TINY} --set distributed.tree=kary --set distributed.arity=2147483647
               --set training.iterations=1 ${SET_DIR})

# One run per checkpoint directory: the lock, stale locks, --overwrite, fresh runs into another
# run's files, contradicting options (issue 17, items 7 and 8).
poet_add_test(cli_checkpoint_dir_lock bash ${CMAKE_CURRENT_SOURCE_DIR}/test_rundir.sh ${POET}
              ${MPIEXEC_EXECUTABLE} ${CMAKE_CURRENT_BINARY_DIR}/cli_rundir ${TINY})
set_tests_properties(cli_checkpoint_dir_lock PROPERTIES TIMEOUT 400 PROCESSORS 3)

# A network far beyond the node's memory (16 members of 784M parameters, ~150 GiB) is refused before
# any allocation, naming the key that raises the limit; the limit key itself works; the summary
# prints the estimate (issue 17, item 8).
poet_cli_error(memory_beyond_node 3 "distributed.memory_limit_gib: rank 0 needs an estimated"
               ${POET} train ${CMAKE_CURRENT_SOURCE_DIR}/configs/too-big.json
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_too_big\")
poet_cli_error(memory_limit_key 3 "but has 0.0 GiB, the 0.01 GiB distributed.memory_limit_gib allows"
               ${MPIEXEC_EXECUTABLE} -np 2 --oversubscribe ${POET} train ${TINY}
               --set distributed.memory_limit_gib=0.01
               --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_memory_limit_key\")
poet_add_test(cli_memory_summary ${POET} train ${TINY} --set training.iterations=2 --overwrite
              --set output.checkpoint_dir=\"${CMAKE_CURRENT_BINARY_DIR}/cli_memory_summary\")
set_tests_properties(cli_memory_summary PROPERTIES TIMEOUT 120 PASS_REGULAR_EXPRESSION
                     "memory estimate \\(before training, docs/config.md\\): [0-9.]+ MiB on rank 0")
# A key given by --set is named as such in its error.
poet_cli_error(set_names_item 3
               "training.batch_size: expected integer >= 1, got -5 (from --set training.batch_size=-5)"
               ${POET} train ${TINY} --set training.lr=0.1 --set training.batch_size=-5)
