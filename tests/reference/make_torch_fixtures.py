"""Small PyTorch files for tests/torch_pickle_test.ts, written with torch.save (torch 1.13).

Not run in CI: its outputs in tests/fixtures/torch/ are committed.
Run: /usr/bin/python3 tests/reference/make_torch_fixtures.py

Writes, each in both formats where it applies (`*_zip.pt`: the zip format of torch >= 1.6, the default;
`*_legacy.pt`: the older non-zip format, `_use_new_zipfile_serialization=False`):
  state_*.pt    the state_dict of a small Conv2d + BatchNorm2d (4-d conv weight, int64 0-d
                num_batches_tracked, OrderedDict with _metadata set by BUILD) plus tensors of other dtypes
                (float64, float16, bfloat16, int32, uint8, bool, a 0-d float32, an empty tensor)
  views_*.pt    views: slices with a storage offset != 0 sharing one storage, a transpose (non-contiguous),
                an expand (stride 0); a plain dict
  wide_i64.pt   an int64 tensor whose values do not fit in int32
  malicious_*   files that would run a shell command if unpickled by Python; they must be refused.
                THEY ARE NEVER LOADED HERE (nor anywhere in Python): only written.
and expected.json: the values each readable file must give, plus the path the malicious files would create.
"""
import collections
import json
import os
import pickle
import secrets
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "torch"
OUT.mkdir(parents=True, exist_ok=True)
for old in OUT.iterdir():
    old.unlink()

torch.manual_seed(0)


def dtype_name(t):
    return {
        torch.float32: "F32", torch.float64: "F64", torch.float16: "F32", torch.bfloat16: "F32",  # widened
        torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL",
    }[t.dtype]


def describe(tensors):
    out = {}
    for name, t in tensors.items():
        flat = t.detach().contiguous().reshape(-1)
        if t.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        values = [int(v) for v in flat.tolist()] if not t.is_floating_point() else flat.tolist()
        out[name] = {"dtype": dtype_name(t), "shape": list(t.shape), "values": values}
    return out


def save_both(obj, stem):
    torch.save(obj, OUT / f"{stem}_zip.pt")
    torch.save(obj, OUT / f"{stem}_legacy.pt", _use_new_zipfile_serialization=False)


# --- a state_dict, as pytorch-fid's weights are one -------------------------------------------------------
net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.BatchNorm2d(2, eps=0.001))
with torch.no_grad():
    net[1].running_mean.copy_(torch.tensor([0.25, -0.5]))
    net[1].running_var.copy_(torch.tensor([1.5, 2.0]))
    net[1].num_batches_tracked.fill_(7)
state = net.state_dict()
state["extra.f64"] = torch.tensor([1.0 / 3.0, -2.5e-300, 1e300], dtype=torch.float64)
state["extra.f16"] = torch.tensor([0.5, -1.25, 65504.0, 6.1035e-05, 3e-06], dtype=torch.float16)  # 3e-6: subnormal
state["extra.bf16"] = torch.tensor([0.5, -3.140625, 1e30], dtype=torch.bfloat16)
state["extra.i32"] = torch.tensor([[-2147483648, 2147483647], [0, -1]], dtype=torch.int32)
state["extra.i64"] = torch.tensor([-3, 0, 2**31 - 1], dtype=torch.int64)
state["extra.u8"] = torch.tensor([0, 1, 255], dtype=torch.uint8)
state["extra.bool"] = torch.tensor([True, False, True])
state["extra.scalar"] = torch.tensor(0.1, dtype=torch.float32)
state["extra.empty"] = torch.zeros(0, 4)
save_both(state, "state")

# --- views: storage offsets != 0, shared storages, strides ------------------------------------------------
big = torch.arange(20, dtype=torch.float32) * 0.5
views = {
    "slice": big[5:11],                              # storage offset 5, the whole 20-element storage is saved
    "window": big[12:18].view(2, 3),                 # same storage, offset 12
    "transposed": torch.arange(12, dtype=torch.float64).reshape(3, 4).t(),  # strides (1, 4)
    "expanded": torch.tensor([1, 2], dtype=torch.int64).expand(3, 2),     # strides (0, 1)
}
save_both(views, "views")

wide = {"wide": torch.tensor([1, 2**40], dtype=torch.int64)}
torch.save(wide, OUT / "wide_i64.pt")

# --- malicious files: never loaded --------------------------------------------------------------------------
marker = f"/tmp/ict_kit_torch_pickle_pwned_{secrets.token_hex(8)}"


class RunsShell:
    def __reduce__(self):
        return (os.system, (f"touch {marker}",))  # pickled as GLOBAL 'posix system' + REDUCE


class EvalsCode:
    def __reduce__(self):
        return (eval, (f"__import__('os').system('touch {marker}')",))  # protocol 4: STACK_GLOBAL


(OUT / "malicious_reduce.pkl").write_bytes(pickle.dumps(RunsShell(), protocol=2))
(OUT / "malicious_stack_global.pkl").write_bytes(pickle.dumps(EvalsCode(), protocol=4))
# The same payload inside real torch files (a state_dict holding the object), in both formats.
save_both(collections.OrderedDict(weight=torch.ones(2), evil=RunsShell()), "malicious")

expected = {
    "state": describe(state),
    "views": describe(views),
    "wide_i64": describe(wide),
    "malicious_marker": marker,
}


def dump(obj):  # one line per tensor
    parts = []
    for key, value in obj.items():
        if isinstance(value, dict):
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


(OUT / "expected.json").write_text(dump(expected))
total = sum(p.stat().st_size for p in OUT.iterdir())
print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes, to {OUT}")
