"""FP8 reference (lora-fp8.md §2.4, §2.5, §2.7) for runtime/exec's tests.

Usage: fp8_reference.py MANIFEST RESULT

MANIFEST lists cases; each names an FP8 checkpoint ("fp8") with its block,
and one or both of:
  "dequantized": rolltplc's dequantize output, compared byte for byte with
      weight_dequant_ref (the 256-entry E4M3 table, one f32 multiply,
      RNE to bf16 / f16, or the f32 product) and the unquantized tensors
      with the source's bytes;
  "recomputed" + "values": rolltplc's MCA -> HF --quantize fp8 --scales
      recompute output and the BF16 checkpoint it quantized, compared with
      the reference encoder: amax/448 per block by tensor division, the
      scale rounded to the scale dtype, q = clamp(Y / s) as a tensor
      division, c10's fp8e4m3fn_from_fp32_value transcribed with tensor ops.
RESULT gets {"torch_version", "cases": {id: {"errors": [...], "checked": n}}}.
Safetensors files are parsed here (the header JSON and torch.frombuffer):
torch 1.13 has neither float8 nor the safetensors package.
"""
import json
import math
import os
import struct
import sys

import torch

DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "U8": torch.uint8,
      "F8_E4M3": torch.uint8, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        s, t = e["data_offsets"]
        raw = bytearray(data[8 + n + s:8 + n + t])
        dt = DT[e["dtype"]]
        if len(raw) == 0:
            x = torch.empty(e["shape"], dtype=dt)
        else:
            x = torch.frombuffer(raw, dtype=dt).reshape(e["shape"])
        out[name] = (e["dtype"], x, bytes(raw))
    return out


def read_checkpoint(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(read_safetensors(os.path.join(d, f)))
    return out


def dec(b):
    s, e, m = b >> 7, (b >> 3) & 15, b & 7
    if e == 15 and m == 7:
        return float("nan")
    v = m * 2.0 ** -9 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
    return -v if s else v


E4M3 = torch.tensor([dec(b) for b in range(256)], dtype=torch.float32)


def expand(s, shape, block):
    M, N = shape[-2], shape[-1]
    return s.to(torch.float32).repeat_interleave(block[0], -2)[..., :M, :].repeat_interleave(block[1], -1)[..., :N]


def weight_dequant_ref(x_u8, s, block, dtype):
    y = E4M3[x_u8.long()] * expand(s, x_u8.shape, block)
    return y if dtype == torch.float32 else y.to(dtype)


def tobytes(t):
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def enc(f):
    """c10::detail::fp8e4m3fn_from_fp32_value on a float32 tensor -> uint8."""
    bits = f.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    sign = bits & 0x80000000
    a = bits ^ sign
    fp8_max = 1087 << 20
    denorm_mask = 141 << 23
    # denormal path: float add, then subtract the mask bits
    af = (a & 0xFFFFFFFF).to(torch.int32).view(torch.float32)
    dm = torch.tensor([denorm_mask], dtype=torch.int32).view(torch.float32)
    den = ((af + dm).view(torch.int32).to(torch.int64) & 0xFFFFFFFF) - denorm_mask
    mant_odd = (a >> 20) & 1
    norm = ((a + ((7 - 127) << 23) + 0x7FFFF + mant_odd) & 0xFFFFFFFF) >> 20
    r = torch.where(a >= fp8_max, torch.full_like(a, 0x7F), torch.where(a < (121 << 23), den, norm))
    r = r | (sign >> 24)
    return (r & 0xFF).to(torch.uint8)


def recompute_ref(y, block, scale_dtype):
    M, N = y.shape[-2], y.shape[-1]
    gm, gn = -(-M // block[0]), -(-N // block[1])
    lead = y.shape[:-2]
    p = torch.zeros(*lead, gm * block[0], gn * block[1], dtype=torch.float32)
    p[..., :M, :N] = y.abs()
    amax = p.reshape(*lead, gm, block[0], gn, block[1]).amax(dim=(-3, -1))
    s = torch.where(amax == 0, torch.ones_like(amax), amax / torch.full_like(amax, 448.0))
    s = s.to(DT[scale_dtype]).to(torch.float32)
    q = (y / expand(s, y.shape, block)).clamp(-448.0, 448.0)
    return enc(q), s.to(DT[scale_dtype])


def run_case(c):
    errs, checked = [], 0
    block = c["block"]
    src = read_checkpoint(c["fp8"])
    if c.get("dequantized"):
        out = read_checkpoint(c["dequantized"])
        odt = DT[c.get("dtype", "BF16")]
        want_names = {n for n in src if not n.endswith("_scale_inv")}
        if set(out) != want_names:
            errs.append("names: extra %s, missing %s" % (sorted(set(out) - want_names), sorted(want_names - set(out))))
        for name, (dt, x, raw) in src.items():
            if name.endswith("_scale_inv") or name not in out:
                continue
            if dt == "F8_E4M3":
                s = src[name + "_scale_inv"][1]
                want = tobytes(weight_dequant_ref(x, s, block, odt))
            else:
                want = raw
            if out[name][2] != want:
                errs.append("%s: bytes differ from the reference" % name)
            checked += 1
    if c.get("recomputed"):
        out = read_checkpoint(c["recomputed"])
        vals = read_checkpoint(c["values"])
        for name, (dt, x, raw) in src.items():
            if dt != "F8_E4M3":
                continue
            sdt = src[name + "_scale_inv"][0]
            y = vals[name][1].to(torch.float32)
            codes, s = recompute_ref(y, block, sdt)
            if out[name][2] != tobytes(codes):
                errs.append("%s: recomputed codes differ from the reference encoder" % name)
            if out[name + "_scale_inv"][2] != tobytes(s):
                errs.append("%s: recomputed scales differ from the reference" % name)
            checked += 1
    return {"errors": errs, "checked": checked}


def selftest():
    errs = []
    want = {0x7E: 448.0, 0x08: 2.0 ** -6, 0x01: 2.0 ** -9}
    for b, v in want.items():
        if E4M3[b].item() != v:
            errs.append("table 0x%02X = %r" % (b, E4M3[b].item()))
    if not math.isnan(E4M3[0x7F].item()) or not math.copysign(1, E4M3[0x80].item()) < 0:
        errs.append("table NaN / -0")
    if hasattr(torch, "float8_e4m3fn"):
        t = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
        if not torch.equal(torch.nan_to_num(t, 1234.0), torch.nan_to_num(E4M3, 1234.0)):
            errs.append("table differs from torch.float8_e4m3fn")
    x = torch.tensor([464.0, 470.0, -464.0, 2.0 ** -10, 2.0 ** -10 + 2.0 ** -20, 448.0, 1.0], dtype=torch.float32)
    if enc(x).tolist() != [0x7E, 0x7F, 0xFE, 0x00, 0x01, 0x7E, 0x38]:
        errs.append("enc edges %r" % enc(x).tolist())
    return errs


def main():
    manifest = json.load(open(sys.argv[1]))
    res = {"torch_version": torch.__version__, "cases": {}}
    errs = selftest()
    for c in manifest["cases"]:
        r = run_case(c)
        r["errors"] = errs + r["errors"]
        res["cases"][c["id"]] = r
    json.dump(res, open(sys.argv[2], "w"))


main()
