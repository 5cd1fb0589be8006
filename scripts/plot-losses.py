#!/usr/bin/env python3
"""Plots the training loss logs (docs/measurements/*.loss.csv, written by `sigma train`)
as one SVG with a panel per stage. Standard library only: the project installs no
plotting packages."""
import csv, math, sys, pathlib

def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [(float(r["seconds"]), float(r["loss"])) for r in rows]

def panel(x0, y0, w, h, title, series):
    out = [f'<g transform="translate({x0},{y0})">',
           f'<rect width="{w}" height="{h}" fill="#fff" stroke="#999"/>',
           f'<text x="{w/2}" y="-8" text-anchor="middle" font-size="14">{title}</text>']
    pts = [p for _, s in series for p in s]
    tmax = max(t for t, _ in pts)
    lo, hi = min(math.log10(v) for _, v in pts), max(math.log10(v) for _, v in pts)
    hi = hi if hi > lo else lo + 1
    sx = lambda t: 40 + (w - 50) * t / tmax
    sy = lambda v: h - 25 - (h - 35) * (math.log10(v) - lo) / (hi - lo)
    for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** k
            if lo <= math.log10(v) <= hi:
                out.append(f'<line x1="40" x2="{w-10}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>'
                           f'<text x="36" y="{sy(v)+4:.1f}" text-anchor="end" font-size="10">{v:g}</text>')
    if not any(lo <= math.log10(m * 10 ** k) <= hi for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1) for m in (1, 2, 5)):
        for v in (10 ** lo, 10 ** hi):  # a narrow range: label its ends
            out.append(f'<text x="36" y="{sy(v)+4:.1f}" text-anchor="end" font-size="10">{v:.3g}</text>')
    out.append(f'<text x="{w/2}" y="{h-6}" text-anchor="middle" font-size="10">seconds on one GPU (0 to {tmax:.0f})</text>')
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for i, (name, s) in enumerate(series):
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(t):.1f},{sy(v):.1f}" for j, (t, v) in enumerate(s))
        out.append(f'<path d="{d}" fill="none" stroke="{colors[i % len(colors)]}" stroke-width="1.5"/>')
        out.append(f'<text x="{w-14}" y="{18 + 14*i}" text-anchor="end" font-size="11" fill="{colors[i % len(colors)]}">{name}</text>')
    out.append("</g>")
    return out

def main(src="docs/measurements", dst="docs/default-model-losses.svg"):
    src = pathlib.Path(src)
    stages = [("VAE (L1 + L2 + KL)", [("vae", "vae")]),
              ("ε UNet + CLIP (MSE on ε)", [("round 1, batch 256", "unet"), ("round 2, batch 1024", "unet2"),
                                           ("round 3, single objects", "unet3"), ("round 4, 1-2 objects", "unet4"),
                                           ("round 5", "unet5"), ("round 6", "unet6"),
                                           ("round 8, two objects", "unet8"), ("round 9", "unet9")]),
              ("flow twin (MSE on velocity)", [("round 1, from ε round 8", "flow"), ("round 2", "flow2")]),
              ("ControlNet (MSE on ε)", [("controlnet", "controlnet")])]
    w, h = 420, 260
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2*w+60}" height="{2*h+90}" font-family="sans-serif">',
           f'<rect width="100%" height="100%" fill="#fafafa"/>']
    for i, (title, files) in enumerate(stages):
        series = [(name, read(src / f"{f}.loss.csv")) for name, f in files if (src / f"{f}.loss.csv").exists()]
        if series:
            svg += panel(20 + (i % 2) * (w + 20), 40 + (i // 2) * (h + 40), w, h, title, series)
    svg.append("</svg>")
    pathlib.Path(dst).write_text("\n".join(svg))
    print(dst)

if __name__ == "__main__":
    main(*sys.argv[1:])
