"""Writes numbered lines to stdout for mcpd's chaos soak: "PID N UNIX_MS", RATE a second, one
write(2) per line (nothing buffered in the process, so a SIGKILL loses no written line). On
SIGTERM it writes "PID END N" (N: lines written before it) and exits 0, so the soak can check
that the last generation's lines all reached the log."""
import os, signal, sys, time

rate = float(sys.argv[1]) if len(sys.argv) > 1 else 500.0
pid, n = os.getpid(), 0


def end(signum, frame):
    os.write(1, f"{pid} END {n}\n".encode())
    os._exit(0)


signal.signal(signal.SIGTERM, end)
start = time.monotonic()
while True:
    os.write(1, f"{pid} {n} {int(time.time() * 1000)}\n".encode())
    n += 1
    ahead = start + n / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
