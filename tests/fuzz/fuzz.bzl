"""kvpack_fuzz_target: one libFuzzer target and the regression test that replays its corpus.

For a target NAME with harness sources `srcs` (defining LLVMFuzzerTestOneInput), this makes

  NAME              the libFuzzer binary. It needs clang and `--config=fuzz` (.bazelrc), and is
                    incompatible with every other configuration, so `bazel build //...` with
                    gcc skips it. tests/fuzz/run_fuzzers.sh builds and runs these.
  NAME_corpus_test  a cc_test that runs the harness once on every file of
                    tests/fuzz/corpus/NAME/ (seeds and saved crash inputs) with replay_main.cc
                    instead of libFuzzer: part of the normal test suite, under any compiler.

Every fuzz binary is tagged "fuzz" (run_fuzzers.sh finds them with bazel query).
"""

def kvpack_fuzz_target(name, srcs, deps = []):
    """Declares fuzz target `name`; see the file comment.

    Args:
      name: target name; its corpus lives in tests/fuzz/corpus/<name>/.
      srcs: harness sources.
      deps: libraries the harness needs.
    """
    harness = name + "_harness"
    native.cc_library(
        name = harness,
        testonly = True,
        srcs = srcs,
        deps = deps + [":fuzz_check"],
        alwayslink = True,
    )
    native.cc_binary(
        name = name,
        testonly = True,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["fuzz"],
        target_compatible_with = select({
            ":fuzz_config": [],
            "//conditions:default": [":fuzz_config_missing"],
        }),
        deps = [harness],
    )
    corpus = "corpus/" + name
    native.cc_test(
        name = name + "_corpus_test",
        args = ["tests/fuzz/" + corpus],
        data = native.glob([corpus + "/**"]),
        deps = [
            harness,
            ":replay_main",
        ],
    )
