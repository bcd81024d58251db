"""grpc_cc_proto: protoc + grpc_cpp_plugin for one .proto under proto/, and its cc_library."""

def grpc_cc_proto(name, proto, deps = [], imports = []):
    """`imports`: the .proto files `proto` imports (with the grpc_cc_proto targets in `deps`)."""
    base = proto[:-len(".proto")]
    outs = [base + ext for ext in [".pb.h", ".pb.cc", ".grpc.pb.h", ".grpc.pb.cc"]]
    native.genrule(
        name = name + "_gen",
        srcs = [proto] + imports,
        outs = outs,
        cmd = "protoc -Iproto --cpp_out=$(RULEDIR) --grpc_out=$(RULEDIR) " +
              "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin $(location " + proto + ")",
    )
    native.cc_library(
        name = name,
        srcs = [outs[1], outs[3]],
        hdrs = [outs[0], outs[2]],
        includes = ["."],
        deps = ["//third_party:grpc"] + deps,
    )
