#!/usr/bin/env python3
"""Compare an HF -> MCA -> HF round trip with torch, lossy ops included.

Usage: zero_centered_roundtrip.py MANIFEST.json RESULT.json

MANIFEST.json is a list of {"id", "hf_dir", "back_dir", "lossy": [names]}.
Every tensor of hf_dir must come back in back_dir bit for bit, except the
names in "lossy" (converted by ROLL's ZeroCenteredRMSNormConverOp, which
computes w - 1 HF -> MCA and w + 1 MCA -> HF in the tensor's dtype): those
must equal torch's (w - 1) + 1 in that dtype. RESULT.json maps ids to
{"checked", "lossy_changed", "errors"}.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import recompute  # noqa: E402


def same_but_nan_payload(a, b):
    """Whether a and b are the same bits, but that a NaN may come back as
    any NaN: arithmetic on a NaN keeps its payload in one torch version
    and not another (1.13 and 2.6 differ), so the payload after w - 1 + 1
    is not a property of the op."""
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    na, nb = torch.isnan(a), torch.isnan(b)
    if not torch.equal(na, nb):
        return False
    return torch.equal(recompute.bits(a)[~na], recompute.bits(b)[~nb])


def check(case):
    a = recompute.read_hf(case["hf_dir"])
    b = recompute.read_hf(case["back_dir"])
    errors = []
    if set(a) != set(b):
        errors.append("names differ: only HF %s, only back %s" % (sorted(set(a) - set(b))[:5], sorted(set(b) - set(a))[:5]))
    lossy = set(case["lossy"])
    checked = changed = 0
    for name in sorted(set(a) & set(b)):
        want = a[name]
        if name in lossy:
            want = (want - 1) + 1
            if not recompute.same(want, a[name]):
                changed += 1
        if name in lossy:
            ok = same_but_nan_payload(want, b[name])
        else:
            ok = recompute.same(want, b[name])
        if not ok:
            errors.append("%s: differs from %s" % (name, "torch's (w - 1) + 1" if name in lossy else "the HF tensor"))
        checked += 1
    return {"checked": checked, "lossy_changed": changed, "errors": errors}


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    out = {"torch_version": torch.__version__, "cases": {}}
    for c in cases:
        out["cases"][c["id"]] = check(c)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
