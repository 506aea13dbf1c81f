#!/usr/bin/env python3
"""delayswitch.py: an Ethernet switch in user space that holds every frame for a fixed delay.

This machine's kernel has no sch_netem, so `tc ... netem delay` cannot add latency between network
namespace hosts (../shared/MULTIHOST.md). Instead each host gets a TAP device whose other end is a
file descriptor of this program, in the root namespace: a frame a host sends is read here, held for
DELAY, then written to the TAP of the host that owns its destination MAC (learned from the frames'
source addresses; unknown and broadcast destinations go to every other port). One-way latency
between two hosts is thus DELAY plus a few tens of microseconds; frames keep their order.

    delayswitch.py --delay-ms 5 --ready FILE tap-a tap-b ...

creates the TAP devices (in the root namespace, where this runs), writes FILE once they exist (the
caller then moves each into its namespace and gives it an address: the descriptor stays attached)
and forwards until SIGTERM/SIGINT. --stats prints frame counts on exit.
"""
import argparse
import fcntl
import heapq
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay per frame, ms")
    ap.add_argument("--ready", help="file written once every TAP device exists")
    ap.add_argument("--stats", action="store_true", help="print frame counts on exit")
    ap.add_argument("taps", nargs="+", help="TAP device names to create (one per host)")
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    fds = [open_tap(name) for name in args.taps]
    port_of_fd = {fd: i for i, fd in enumerate(fds)}
    mac_port = {}  # learned: source MAC -> port
    held = []  # heap of (release time, sequence, port or -1 for flood, source port, frame)
    sequence = 0
    forwarded = dropped = 0
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")
    while running[0]:
        now = time.monotonic()
        # Release what is due, in arrival order.
        while held and held[0][0] <= now:
            _, _, out, src, frame = heapq.heappop(held)
            targets = [out] if out >= 0 else [p for p in range(len(fds)) if p != src]
            for p in targets:
                try:
                    os.write(fds[p], frame)
                    forwarded += 1
                except (BlockingIOError, OSError):
                    dropped += 1  # the host's queue is full or its device is down: a lost frame
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            continue
        arrived = time.monotonic()
        for fd in ready:
            src = port_of_fd[fd]
            while True:
                try:
                    frame = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if len(frame) < 14:
                    continue
                dst, source = frame[0:6], frame[6:12]
                if not source[0] & 1:
                    mac_port[source] = src
                out = mac_port.get(dst, -1) if not dst[0] & 1 else -1
                if out == src:
                    continue
                sequence += 1
                if delay <= 0:
                    heapq.heappush(held, (0.0, sequence, out, src, frame))
                else:
                    heapq.heappush(held, (arrived + delay, sequence, out, src, frame))
    if args.stats:
        print(f"delayswitch: {forwarded} frames forwarded, {dropped} dropped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
