#!/usr/bin/env python3
"""Pack test fixtures small enough to travel to the GPU machine, and unpack them there.

The device tool carries at most 64 MiB with the working tree, and ../shared does not travel.
The fixtures hold the same tensors several times (a single file and its diffusers folder,
two copies of CLIP's vocabulary), so the pack stores each distinct tensor's bytes once,
xz-compressed, with a manifest that rebuilds every file byte for byte (checked by SHA-1).

  scripts/device-fixtures.py pack ../shared/fixtures .device/fx sd15-tiny sdxl-tiny ...
  scripts/device-fixtures.py unpack .device/fx .device/fixtures      # on the GPU machine

A name may be a folder or file under the fixtures folder; `!sub/folder` leaves that one out.
Python's standard library only (the GPU image has no other packages we could count on).
"""
import hashlib
import json
import lzma
import os
import struct
import sys


def pieces(data, path):
    """A safetensors file as its header and each tensor's bytes; any other file whole."""
    if not path.endswith(".safetensors"):
        return [data]
    n = struct.unpack("<Q", data[:8])[0]
    base = 8 + n
    header = json.loads(data[8:base])
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    out, pos = [data[:base]], 0
    for a, b in spans:
        if a != pos:  # a gap the format does not have: keep the file whole
            return [data]
        out.append(data[base + a:base + b])
        pos = b
    return out if base + pos == len(data) else [data]


def pack(src, dst, names):
    keep = [n for n in names if not n.startswith("!")]
    skip = [os.path.normpath(n[1:]) for n in names if n.startswith("!")]
    os.makedirs(dst, exist_ok=True)
    blobs, index, files = bytearray(), {}, []
    paths = []
    for name in keep:
        full = os.path.join(src, name)
        if os.path.isfile(full):
            paths.append(name)
            continue
        for dirpath, _, filenames in os.walk(full):
            for f in filenames:
                paths.append(os.path.relpath(os.path.join(dirpath, f), src))
    for rel in sorted(paths):
        if any(rel == s or rel.startswith(s + os.sep) for s in skip):
            continue
        data = open(os.path.join(src, rel), "rb").read()
        parts = []
        for piece in pieces(data, rel):
            h = hashlib.sha1(piece).hexdigest()
            if h not in index:
                index[h] = (len(blobs), len(piece))
                blobs += piece
            parts.append(h)
        files.append({"path": rel, "parts": parts, "sha1": hashlib.sha1(data).hexdigest()})
    with lzma.open(os.path.join(dst, "blobs.xz"), "wb", preset=9) as out:
        out.write(blobs)
    with open(os.path.join(dst, "manifest.json"), "w") as out:
        json.dump({"index": index, "files": files}, out)
    total = sum(os.path.getsize(os.path.join(dst, f)) for f in ("blobs.xz", "manifest.json"))
    print(f"{len(files)} files, {len(blobs) / 1e6:.1f} MB of distinct bytes, {total / 1e6:.1f} MB packed in {dst}")


def unpack(src, dst):
    manifest = json.load(open(os.path.join(src, "manifest.json")))
    with lzma.open(os.path.join(src, "blobs.xz"), "rb") as f:
        blobs = f.read()
    for entry in manifest["files"]:
        data = b"".join(blobs[o:o + n] for o, n in (manifest["index"][h] for h in entry["parts"]))
        if hashlib.sha1(data).hexdigest() != entry["sha1"]:
            sys.exit(f"device-fixtures: {entry['path']} did not rebuild byte for byte")
        path = os.path.join(dst, entry["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)
    print(f"{len(manifest['files'])} files unpacked into {dst}")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "pack":
        pack(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "unpack":
        unpack(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
