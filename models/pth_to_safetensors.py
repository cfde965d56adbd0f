#!/usr/bin/env python3
"""Converts a legacy (non-zip) PyTorch .pth state_dict to safetensors without torch:
the pickle is read with stub classes, the raw storages that follow it are copied.

    python3 models/pth_to_safetensors.py IN.pth OUT.safetensors

Legacy layout (torch.save with _use_new_zipfile_serialization=False): five pickles —
magic number, protocol version, system info, the object (tensors reference storages
by persistent id), the list of storage keys — then, per key in that order, an 8-byte
little-endian element count and the storage's bytes.
"""
import itertools
import json
import pickle
import struct
import sys
from collections import OrderedDict

MAGIC = 0x1950A86A20F9469CFC6C
DTYPES = {  # storage class -> (safetensors dtype, bytes per element)
    "FloatStorage": ("F32", 4),
    "DoubleStorage": ("F64", 8),
    "HalfStorage": ("F16", 2),
    "LongStorage": ("I64", 8),
    "IntStorage": ("I32", 4),
    "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1),
}


class Storage:
    def __init__(self, kind, key, size):
        self.kind, self.key, self.size = kind, key, size


class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)


def rebuild_tensor(storage, offset, shape, stride, *_):
    return Tensor(storage, offset, shape, stride)


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the checkpoint")

    def persistent_load(self, pid):
        if pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid[0]!r}")
        _, kind, key, _location, size = pid[:5]
        if kind not in DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type {kind}")
        return self.storages.setdefault(key, Storage(kind, key, size))


def contiguous(shape):
    stride, acc = [], 1
    for dim in reversed(shape):
        stride.append(acc)
        acc *= dim
    return tuple(reversed(stride))


def convert(src, dst):
    with open(src, "rb") as f:
        if f.read(2) == b"PK":
            sys.exit(f"{src}: a zip-format checkpoint; this converter reads the legacy format")
        f.seek(0)
        if pickle.load(f) != MAGIC:
            sys.exit(f"{src}: not a legacy PyTorch checkpoint (bad magic number)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # system info
        unpickler = Unpickler(f)
        unpickler.storages = {}
        state = unpickler.load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            storage = unpickler.storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            width = DTYPES[storage.kind][1]
            raw = f.read(count * width)
            if len(raw) != count * width:
                sys.exit(f"{src}: truncated storage {key}")
            data[key] = raw
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    header, chunks, offset = {}, [], 0
    for name, t in state.items():
        if not isinstance(t, Tensor):
            sys.exit(f"{src}: entry {name!r} is not a tensor")
        dtype, width = DTYPES[t.storage.kind]
        n = 1
        for d in t.shape:
            n *= d
        source = data[t.storage.key]
        if t.stride == contiguous(t.shape) or n == 0:
            raw = source[t.offset * width:(t.offset + n) * width]
        else:
            # Channels-last and other strided layouts: gather into row-major order.
            parts = []
            for index in itertools.product(*(range(d) for d in t.shape)):
                at = (t.offset + sum(i * s for i, s in zip(index, t.stride))) * width
                parts.append(source[at:at + width])
            raw = b"".join(parts)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(dst, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for c in chunks:
            out.write(c)
    values = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values()) // 4
    print(f"{dst}: {len(header)} tensors, {values} values")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
