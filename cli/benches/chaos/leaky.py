"""A parent that sleeps and a child that leaks about 20 MiB a second until it is killed (mcpd's
chaos soak: the app's memory limit must recycle the whole generation, child included)."""
import os, time

if os.fork() == 0:
    hoard = []
    for _ in range(100000):
        hoard.append(bytearray(2 << 20))
        time.sleep(0.1)
    os._exit(0)
while True:
    time.sleep(3600)
