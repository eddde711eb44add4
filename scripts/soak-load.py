#!/usr/bin/env python3
"""Mixed load for scripts/soak.sh: drives an echo server for a while and checks every echo.

Workers (threads), each repeating its kind of connection until the time is up:
  echo       connect, send a random message, read the echo back, compare, close
  reset      connect, send, close at once with SO_LINGER 0 (the server sees a reset)
  slow       connect, send 256 KiB, read the echo in small pieces with pauses (a slow
             reader: the server's backpressure must hold it), compare, close
  halfclose  connect, send, shutdown(SHUT_WR), read until end of file, compare
  udp        (with --udp-port) send datagrams, compare the echoes (losses are counted, not
             errors: UDP may drop)

Prints one summary line and exits 1 if any echo differed or a TCP worker failed in a way
the server caused (a reset of a connection the client did not reset, a short echo).
"""
import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--udp-port", type=int, default=0)
parser.add_argument("--seconds", type=float, default=60)
parser.add_argument("--workers", type=int, default=4, help="workers of each TCP kind")
args = parser.parse_args()

deadline = time.monotonic() + args.seconds
lock = threading.Lock()
counts = {}
failures = []


def count(key, n=1):
    with lock:
        counts[key] = counts.get(key, 0) + n


def fail(what):
    with lock:
        if len(failures) < 20:
            failures.append(what)
    count("failures")


def connect():
    s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_exactly(s, n, piece=65536, pause=0.0):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(min(piece, n - len(out)))
        if not chunk:
            break
        out += chunk
        if pause:
            time.sleep(pause)
    return bytes(out)


def echo_worker(rng):
    while time.monotonic() < deadline:
        message = os.urandom(rng.randint(1, 32768))
        try:
            with connect() as s:
                for _ in range(rng.randint(1, 5)):
                    s.sendall(message)
                    back = read_exactly(s, len(message))
                    if back != message:
                        fail(f"echo: {len(back)} of {len(message)} bytes back, or different")
                        break
                    count("echo roundtrips")
            count("echo connections")
        except OSError as e:
            fail(f"echo: {e!r}")


def reset_worker(rng):
    linger = struct.pack("ii", 1, 0)
    while time.monotonic() < deadline:
        try:
            s = connect()
            s.sendall(os.urandom(rng.randint(1, 65536)))
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.01)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
            count("resets")
        except OSError as e:
            # Sending into a connection the server is echoing into can meet its own reset
            # only after our close; before it, nothing may fail.
            fail(f"reset: {e!r}")


def slow_worker(rng):
    while time.monotonic() < deadline:
        message = os.urandom(256 * 1024)
        try:
            with connect() as s:
                sender = threading.Thread(target=s.sendall, args=(message,))
                sender.start()
                back = read_exactly(s, len(message), piece=4096, pause=0.002)
                sender.join()
                if back != message:
                    fail(f"slow: {len(back)} of {len(message)} bytes back, or different")
            count("slow readers")
        except OSError as e:
            fail(f"slow: {e!r}")


def halfclose_worker(rng):
    while time.monotonic() < deadline:
        message = os.urandom(rng.randint(0, 100000))
        try:
            with connect() as s:
                sender = threading.Thread(target=lambda: (s.sendall(message), s.shutdown(socket.SHUT_WR)))
                sender.start()
                back = bytearray()
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    back += chunk
                sender.join()
                if bytes(back) != message:
                    fail(f"halfclose: {len(back)} of {len(message)} bytes back before end of file, or different")
            count("half closes")
        except OSError as e:
            fail(f"halfclose: {e!r}")


def udp_worker(rng):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        message = os.urandom(rng.randint(1, 1400))
        try:
            s.sendto(message, ("127.0.0.1", args.udp_port))
            back, _ = s.recvfrom(65536)
            if back != message:
                fail("udp: the echo differs")
            count("datagrams")
        except socket.timeout:
            count("datagrams lost")
        except OSError as e:
            fail(f"udp: {e!r}")
    s.close()


kinds = [echo_worker, reset_worker, slow_worker, halfclose_worker]
threads = []
seed = 0
for kind in kinds:
    for _ in range(args.workers):
        seed += 1
        threads.append(threading.Thread(target=kind, args=(random.Random(seed),), daemon=True))
if args.udp_port:
    for _ in range(2):
        seed += 1
        threads.append(threading.Thread(target=udp_worker, args=(random.Random(seed),), daemon=True))
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=max(0, deadline - time.monotonic()) + 30)

print("load: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
for f in failures:
    print("load FAILURE: " + f)
sys.exit(1 if failures or any(t.is_alive() for t in threads) else 0)
