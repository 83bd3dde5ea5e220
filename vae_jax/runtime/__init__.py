"""The runtime beside the training loop: what a run needs from the machine and the processes
around it, kept out of `trainer.py` so that the loop reads as setup, compile, loop, finish.

    signals.py   stop requests (SIGTERM, Ctrl-C) honoured after the epoch; `Interrupted`
    locks.py     one writer per workdir: the flock on DIR/lock
    hosts.py     agreement between the processes of a multi-host run, with bounded waits
    faults.py    the one top-level handler: a machine's fault (memory, disk, a lost peer) as one line
    files.py     every file written whole or not at all, `DiskFull` naming the path; DIR/damaged/
    contain.py   Orbax's checkpoint I/O contained: a failed save or restore leaves nothing behind
    writers.py   one writer for metrics.jsonl and W&B

Nothing here imports JAX at package import time, so the launcher and the sweep runner can use
`files` before JAX starts.
"""
