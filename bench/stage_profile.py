#!/usr/bin/env python3
"""Server CPU time per block by stage, from `perf script` output of kvpack_server.

Reads `perf script -F comm,tid,period,ip,sym` on stdin (samples taken with -g or --call-graph
dwarf while one phase ran) and prints, for each stage, the CPU time it took per block:
total sampled time in the stage / --blocks. A sample belongs to the first stage, in the
order below, that one of its stack frames names:

  checksum       XXH3 (block checksum, storage checksums)
  zero-fill      memset of a new buffer (a buffer allocated zeroed and then overwritten),
                 with the page faults of touching it
  encode         the block codecs' encode (raw: the copy into the encoded block)
  decode         the block codecs' decode
  store          the RAM and disk tiers (index, LRU, RocksDB)
  receive        reading messages: the socket, HTTP/2 framing, message parsing and framing
  send           writing messages: message building, HTTP/2 framing, the socket
  wake+wait      handing work between threads: futexes, epoll, the scheduler
  other          the rest: gRPC's completion queues and call objects, malloc, timer
                 interrupts, metrics
"""
import argparse
import re
import sys
from collections import defaultdict

STAGES = [
    ("checksum", re.compile(r"XXH3|XXH64|libxxhash")),
    ("zero-fill", re.compile(r"__memset")),
    ("encode", re.compile(r"BlockCodec::Encode|EncodeBlock|EncodeHost|CopyRawRange|"
                          r"RawCodec::Encode|Int8Codec::Encode|Turbo\w*::Encode")),
    ("decode", re.compile(r"BlockCodec::Decode|DecodeBlock|DecodeHost|Codec::Decode")),
    ("store", re.compile(r"TieredStore|RamTier|DiskTier|rocksdb")),
    ("receive", re.compile(r"tcp_recvmsg|ReadPutRequest|SplitField|PutStream::Consume|"
                           r"GenericDeserialize|_InternalParse|ParseFrom|read_action|"
                           r"chttp2.*[Pp]arse|perform_stream_op.*recv|HPackParser")),
    ("send", re.compile(r"tcp_sendmsg|GetResponseBuffer|SerializeTo|Serialize\w*Partial|"
                        r"write_action|chttp2.*[Ww]rite|tcp_send\b|sendmsg")),
    ("wake+wait", re.compile(r"futex|__schedule|try_to_wake_up|epoll_wait|Waiter::|CondVar|"
                             r"pollset_kick|pthread_cond")),
]


def samples(lines):
    """Yields (period, [frames leaf first]) per sample of `perf script` output."""
    period, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if period is not None:
                yield period, frames
            period, frames = None, []
            continue
        if not line.startswith((" ", "\t")):
            fields = line.split()
            period = int(fields[-1]) if fields and fields[-1].isdigit() else 1
            continue
        parts = line.strip().split(None, 1)
        frames.append(parts[1] if len(parts) > 1 else parts[0])
    if period is not None:
        yield period, frames


def stage_of(frames):
    for name, pattern in STAGES:
        if any(pattern.search(frame) for frame in frames):
            return name
    return "other"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, required=True, help="blocks the phase moved")
    parser.add_argument("--label", default="", help="printed before the table")
    parser.add_argument("--top", type=int, default=0,
                        help="also list the N leaf functions that take most of 'other'")
    args = parser.parse_args()
    totals = defaultdict(int)
    other_leaves = defaultdict(int)
    for period, frames in samples(sys.stdin):
        stage = stage_of(frames)
        totals[stage] += period
        if stage == "other" and frames:
            other_leaves[frames[0].split("+")[0]] += period
    total = sum(totals.values())
    if args.label:
        print(args.label)
    print("| stage | us per block | share |")
    print("|---|---:|---:|")
    for name in [s for s, _ in STAGES] + ["other"]:
        ns = totals.get(name, 0)
        print(f"| {name} | {ns / 1e3 / args.blocks:.0f} | {100.0 * ns / max(total, 1):.0f}% |")
    print(f"| **total** | **{total / 1e3 / args.blocks:.0f}** | |")
    for leaf, ns in sorted(other_leaves.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"    other: {ns / 1e3 / args.blocks:6.0f} us  {leaf}")


if __name__ == "__main__":
    main()
