"""Reads the history keys of an offline W&B run file (DIR/wandb/offline-run-*/run-*.wandb).

The file is W&B's record log: a 7-byte header, then 32 KiB blocks of records, each with a
7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) and a protobuf payload.
"""

import struct

from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024


def history_keys(path) -> set[str]:
  data = open(path, "rb").read()
  assert data[:4] == b":W&B", "not a W&B run file"
  pos, buf, keys = 7, b"", set()
  while pos + 7 <= len(data):
    left = _BLOCK - pos % _BLOCK
    if left < 7:
      pos += left
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    pos += 7
    buf += data[pos:pos + length]
    pos += length
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(buf)
      buf = b""
      if record.WhichOneof("record_type") == "history":
        keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
  return keys
