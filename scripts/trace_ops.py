#!/usr/bin/env python3
# Usage: scripts/trace_ops.py DIR/unet_cfg_step_eager.trace.json RUNS [ROWS] (from sigma bench --profile DIR).
# Kineto trace -> GPU kernel time by (launching CPU operator, input shapes): what the adds are.
import json, sys, collections, bisect
t = json.load(open(sys.argv[1]))
ev = [e for e in t.get("traceEvents", []) if e.get("ph") == "X"]
runtime = {e["args"]["correlation"]: e for e in ev if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})}
ops = collections.defaultdict(list)
for e in ev:
    if e.get("cat") == "cpu_op":
        ops[e["tid"]].append(e)
for tid in ops: ops[tid].sort(key=lambda e: e["ts"])
agg = collections.Counter(); cnt = collections.Counter()
for e in ev:
    if e.get("cat") != "kernel": continue
    r = runtime.get(e.get("args", {}).get("correlation"))
    key = "?"
    if r:
        best = None
        for o in ops.get(r["tid"], []):
            if o["ts"] > r["ts"]: break
            if o["ts"] + o["dur"] >= r["ts"] + r["dur"]:
                if best is None or o["dur"] <= best["dur"]: best = o
        if best: key = best["name"] + " " + str(best["args"].get("Input Dims", ""))[:90]
    k = e["name"][:50] + " | " + key
    agg[k] += e["dur"]; cnt[k] += 1
runs = float(sys.argv[2]) if len(sys.argv) > 2 else 1
for k, v in agg.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 30):
    print(f"{v/1e3/runs:8.3f} ms {cnt[k]/runs:6.0f} x  {k}")
