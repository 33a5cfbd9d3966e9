#!/usr/bin/python3
"""PyTorch side of the medsam benchmark.

Times, with plain torch ops on the same machine and thread count as the C
benchmarks: the kernels of bench_kernels (same names and shapes, so rows
join), the stages of the SAM ViT-B image encoder and the prompt encoder +
mask decoder for one box and a batch of 3, all computed from the same .pth
checkpoint the engine converts. The network is written out here (no
segment_anything package) after segment_anything/modeling; --check compares
it with the fixture's float64 references so the timed code is known right.
--device cuda times the encoder and the decoder on the GPU instead (fp32,
TF32 off; no kernels), with the GPU's peak memory.

Run with the system python (Debian's python3-torch): /usr/bin/python3.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

IMG = 1024          # SAM input size
ENC_EPS = 1e-6      # ViT LayerNorm and LayerNorm2d
DEC_EPS = 1e-5      # two-way transformer LayerNorm


def sync():
    """Waits for the GPU's queued work, so that wall time counts it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_of(fn, repeat, min_sample=0.05):
    """Best time in ms. One warm-up call, which also sizes the samples: fast
    ops are looped so each sample lasts >= min_sample s and timer noise
    stays small."""
    t = time.perf_counter()
    fn()
    inner = max(1, int(min_sample / max(time.perf_counter() - t, 1e-9)))
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best * 1e3


def layernorm2d(x, w, b):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return w[:, None, None] * ((x - u) / torch.sqrt(s + ENC_EPS)) + b[:, None, None]


def rel_pos_attention(q, k, v, rel_h, rel_w, kh, kw, scale):
    """SAM's attention with decomposed relative positions; rel_h (B,n,kh)
    and rel_w (B,n,kw) are the per-query bias terms."""
    b, n, _ = q.shape
    a = (q * scale) @ k.transpose(-2, -1)
    a = (a.view(b, n, kh, kw) + rel_h[:, :, :, None] + rel_w[:, :, None, :]).view(b, n, kh * kw)
    return a.softmax(dim=-1) @ v


def rel_table(size, table):
    """get_rel_pos for q_size == k_size: (size, size, head_dim)."""
    r = torch.arange(size, device=table.device)
    coords = r[:, None] - r[None, :] + (size - 1)
    return table[coords]


class Sam:
    """The network as functions of the checkpoint's state dict."""

    def __init__(self, sd, dec_heads):
        self.sd = sd
        self.dec_heads = dec_heads
        self.dim = sd["image_encoder.pos_embed"].shape[-1]
        self.depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("image_encoder.blocks."))
        self.patch = sd["image_encoder.patch_embed.proj.weight"].shape[-1]
        self.grid = IMG // self.patch
        self.n_mask_tokens = sd["mask_decoder.mask_tokens.weight"].shape[0]

    def p(self, name):
        return self.sd[name]

    def lin(self, x, pre):
        return F.linear(x, self.p(pre + ".weight"), self.p(pre + ".bias"))

    def ln(self, x, pre, eps):
        return F.layer_norm(x, x.shape[-1:], self.p(pre + ".weight"), self.p(pre + ".bias"), eps)

    # ---- image encoder -------------------------------------------------
    def is_global(self, i):
        # The rel-pos table is 2*window-1 long; global blocks span the grid.
        return (self.p(f"image_encoder.blocks.{i}.attn.rel_pos_h").shape[0] + 1) // 2 >= self.grid

    def enc_attention(self, x, pre):
        b, h, w, c = x.shape
        rel_h_tab, rel_w_tab = self.p(pre + ".rel_pos_h"), self.p(pre + ".rel_pos_w")
        hd = rel_h_tab.shape[1]
        heads = c // hd
        qkv = self.lin(x, pre + ".qkv").reshape(b, h * w, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * heads, h * w, hd).unbind(0)
        r_q = q.reshape(b * heads, h, w, hd)
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_table(h, rel_h_tab)).reshape(b * heads, h * w, h)
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_table(w, rel_w_tab)).reshape(b * heads, h * w, w)
        o = rel_pos_attention(q, k, v, rel_h, rel_w, h, w, hd ** -0.5)
        o = o.view(b, heads, h, w, hd).permute(0, 2, 3, 1, 4).reshape(b, h, w, c)
        return self.lin(o, pre + ".proj")

    def enc_block(self, x, i):
        pre = f"image_encoder.blocks.{i}"
        shortcut = x
        x = self.ln(x, pre + ".norm1", ENC_EPS)
        if self.is_global(i):
            x = self.enc_attention(x, pre + ".attn")
        else:
            ws = (self.p(pre + ".attn.rel_pos_h").shape[0] + 1) // 2
            _, h, w, c = x.shape
            ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
            hp, wp = h + ph, w + pw
            x = x.view(1, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, c)
            x = self.enc_attention(x, pre + ".attn")
            x = x.view(1, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(1, hp, wp, c)
            x = x[:, :h, :w, :]
        x = shortcut + x
        y = F.gelu(self.lin(self.ln(x, pre + ".norm2", ENC_EPS), pre + ".mlp.lin1"))
        return x + self.lin(y, pre + ".mlp.lin2")

    def encode(self, image, stages):
        """image (1,3,S,S) -> embeddings (1,D,g,g); adds each stage's seconds
        to stages."""
        t = time.perf_counter()

        def mark(name):
            nonlocal t
            sync()
            now = time.perf_counter()
            stages[name] = stages.get(name, 0.0) + now - t
            t = now

        P = self.p
        x = F.conv2d(image, P("image_encoder.patch_embed.proj.weight"),
                     P("image_encoder.patch_embed.proj.bias"), stride=self.patch).permute(0, 2, 3, 1)
        x = x + P("image_encoder.pos_embed")
        mark("enc_patch_embed")
        for i in range(self.depth):
            x = self.enc_block(x, i)
            mark("enc_blocks_global" if self.is_global(i) else "enc_blocks_window")
        x = x.permute(0, 3, 1, 2)
        x = layernorm2d(F.conv2d(x, P("image_encoder.neck.0.weight")),
                        P("image_encoder.neck.1.weight"), P("image_encoder.neck.1.bias"))
        x = layernorm2d(F.conv2d(x, P("image_encoder.neck.2.weight"), padding=1),
                        P("image_encoder.neck.3.weight"), P("image_encoder.neck.3.bias"))
        mark("enc_neck")
        return x

    # ---- prompt encoder ------------------------------------------------
    def pe(self, coords):
        """Random Fourier features of coords in [0,1]: (..., 2) -> (..., D)."""
        c = 2 * math.pi * ((2 * coords - 1) @ self.p("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"))
        return torch.cat([torch.sin(c), torch.cos(c)], dim=-1)

    def dense_pe(self):
        g = self.grid
        gauss = self.p("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")
        e = (torch.arange(g, dtype=torch.float32, device=gauss.device) + 0.5) / g
        xy = torch.stack([e[None, :].expand(g, g), e[:, None].expand(g, g)], dim=-1)
        return self.pe(xy).permute(2, 0, 1).unsqueeze(0)

    def prompt_boxes(self, boxes):
        """boxes (B,4) in the 1024 frame -> sparse (B,2,D), dense (B,D,g,g)."""
        corners = self.pe((boxes + 0.5).reshape(-1, 2, 2) / IMG)
        corners = corners + torch.stack([self.p("prompt_encoder.point_embeddings.2.weight")[0],
                                         self.p("prompt_encoder.point_embeddings.3.weight")[0]])
        g = self.grid
        dense = self.p("prompt_encoder.no_mask_embed.weight").reshape(1, -1, 1, 1).expand(boxes.shape[0], -1, g, g)
        return corners, dense

    # ---- mask decoder --------------------------------------------------
    def dec_attention(self, q, k, v, pre):
        q, k, v = self.lin(q, pre + ".q_proj"), self.lin(k, pre + ".k_proj"), self.lin(v, pre + ".v_proj")
        b, n, c = q.shape
        h = self.dec_heads

        def split(x):
            return x.reshape(b, x.shape[1], h, c // h).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        a = (q @ k.transpose(-2, -1) / math.sqrt(c // h)).softmax(dim=-1)
        return self.lin((a @ v).transpose(1, 2).reshape(b, n, c), pre + ".out_proj")

    def two_way(self, src, pos, tokens):
        pre = "mask_decoder.transformer"
        keys = src.flatten(2).permute(0, 2, 1)
        key_pe = pos.flatten(2).permute(0, 2, 1)
        queries = tokens
        n_layers = 1 + max(int(k.split(".")[3]) for k in self.sd if k.startswith(pre + ".layers."))
        for i in range(n_layers):
            lp = f"{pre}.layers.{i}"
            if i == 0:  # skip_first_layer_pe: no PE and no residual
                queries = self.dec_attention(queries, queries, queries, lp + ".self_attn")
            else:
                q = queries + tokens
                queries = queries + self.dec_attention(q, q, queries, lp + ".self_attn")
            queries = self.ln(queries, lp + ".norm1", DEC_EPS)
            q, k = queries + tokens, keys + key_pe
            queries = self.ln(queries + self.dec_attention(q, k, keys, lp + ".cross_attn_token_to_image"),
                              lp + ".norm2", DEC_EPS)
            mlp = self.lin(torch.relu(self.lin(queries, lp + ".mlp.lin1")), lp + ".mlp.lin2")
            queries = self.ln(queries + mlp, lp + ".norm3", DEC_EPS)
            q, k = queries + tokens, keys + key_pe
            keys = self.ln(keys + self.dec_attention(k, q, queries, lp + ".cross_attn_image_to_token"),
                           lp + ".norm4", DEC_EPS)
        q, k = queries + tokens, keys + key_pe
        queries = queries + self.dec_attention(q, k, keys, pre + ".final_attn_token_to_image")
        return self.ln(queries, pre + ".norm_final_attn", DEC_EPS), keys

    def mlp(self, x, pre):
        n = 1 + max(int(k.split(".")[-2]) for k in self.sd if k.startswith(pre + ".layers."))
        for i in range(n):
            x = self.lin(x, f"{pre}.layers.{i}")
            if i < n - 1:
                x = torch.relu(x)
        return x

    def decode(self, emb, boxes, multimask=False):
        """Prompt encoder + mask decoder for B boxes against one embedding:
        low-res logits (B,C,4g,4g) and IoU (B,C)."""
        P = self.p
        sparse, dense = self.prompt_boxes(boxes)
        b = boxes.shape[0]
        out_tokens = torch.cat([P("mask_decoder.iou_token.weight"), P("mask_decoder.mask_tokens.weight")])
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        src = emb.expand(b, -1, -1, -1) + dense
        pos = self.dense_pe().expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.two_way(src, pos, tokens)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        up = F.conv_transpose2d(src, P("mask_decoder.output_upscaling.0.weight"),
                                P("mask_decoder.output_upscaling.0.bias"), stride=2)
        up = F.gelu(layernorm2d(up, P("mask_decoder.output_upscaling.1.weight"),
                                P("mask_decoder.output_upscaling.1.bias")))
        up = F.gelu(F.conv_transpose2d(up, P("mask_decoder.output_upscaling.3.weight"),
                                       P("mask_decoder.output_upscaling.3.bias"), stride=2))
        hyper = torch.stack([self.mlp(hs[:, 1 + i], f"mask_decoder.output_hypernetworks_mlps.{i}")
                             for i in range(self.n_mask_tokens)], dim=1)
        _, cu, hu, wu = up.shape
        masks = (hyper @ up.view(b, cu, hu * wu)).view(b, -1, hu, wu)
        iou = self.mlp(hs[:, 0], "mask_decoder.iou_prediction_head")
        sel = slice(1, None) if multimask else slice(0, 1)
        return masks[:, sel], iou[:, sel]


# Boxes in the 1024 frame for the decoder timings (bench_model uses the same);
# content does not change the cost.
BOXES = [[244.5, 586.9, 411.3, 716.9], [132.9, 591.4, 233.8, 754.5], [135.5, 212.4, 321.4, 559.2]]


def bench_kernels(repeat):
    """The ops of bench_kernels.c as PyTorch runs them, as rows {op, shape,
    ms} with bench_kernels' own op and shape strings so the rows join.
    PyTorch has no f16 GEMM on CPU, so that row is missing here."""
    torch.manual_seed(0)
    rows = []

    def row(op, shape, fn):
        rows.append({"op": op, "shape": shape, "ms": best_of(fn, repeat)})

    a, c = torch.randn(4096, 768), torch.empty(4096, 2304)
    bt = torch.randn(2304, 768)
    row("sgemm", "4096x2304x768 NT", lambda: torch.mm(a, bt.t(), out=c))
    a, b, c = torch.randn(4096, 4096), torch.randn(4096, 4096), torch.empty(4096, 4096)
    row("sgemm", "4096x4096x4096 NN", lambda: torch.mm(a, b, out=c))
    x, lin = torch.randn(4096, 768), torch.nn.Linear(768, 3072)
    row("linear", "4096x768->3072 f32 +gelu", lambda: F.gelu(lin(x)))
    # PyTorch's int8 path: dynamic quantisation (int8 weights and activations).
    engines = [e for e in ("fbgemm", "onednn", "qnnpack") if e in torch.backends.quantized.supported_engines]
    if engines:
        torch.backends.quantized.engine = engines[0]
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        row("linear", "4096x768->3072 q8 +gelu", lambda: F.gelu(q(x)))
    x, lin = torch.randn(7, 256), torch.nn.Linear(256, 2048)
    row("linear", "7x256->2048 f32", lambda: torch.relu(lin(x)))  # decoder MLP, with ReLU
    # One encoder block's attention: 25 windows x 12 heads of 14x14 tokens,
    # or 12 heads over the 64x64 grid; the rel-pos bias terms are inputs.
    for op, windows, g in (("attn window", 25, 14), ("attn global", 1, 64)):
        q, k, v = (torch.randn(windows * 12, g * g, 64) for _ in range(3))
        rh, rw = torch.randn(windows * 12, g * g, g), torch.randn(windows * 12, g * g, g)
        row(op, f"{windows} x 12h x {g * g} tok, d64, relpos",
            lambda: rel_pos_attention(q, k, v, rh, rw, g, g, 0.125))
    # The decoder's token-to-image attention: 7 tokens against the 64x64
    # image, 8 heads of 16.
    q, k, v = torch.randn(8, 7, 16), torch.randn(8, 4096, 16), torch.randn(8, 4096, 16)
    row("attn few", "8h x 7q x 4096 tok, d16",
        lambda: ((q * 0.25) @ k.transpose(-2, -1)).softmax(dim=-1) @ v)
    x, w, b = torch.randn(4096, 768), torch.randn(768), torch.randn(768)
    row("layernorm", "4096x768", lambda: F.layer_norm(x, (768,), w, b, ENC_EPS))
    x, w, b = torch.randn(1, 256, 64, 64), torch.randn(256), torch.randn(256)
    row("layernorm2d", "256 ch x 4096 px", lambda: layernorm2d(x, w, b))
    x = torch.randn(4096, 3072)
    row("gelu", "4096x3072", lambda: F.gelu(x))
    x, w, b = torch.randn(1, 256, 64, 64), torch.randn(256, 256, 3, 3), torch.randn(256)
    row("conv3x3", "256->256 @64x64", lambda: F.conv2d(x, w, b, padding=1))
    img, w, b = torch.rand(1, 3, 1024, 1024), torch.randn(768, 3, 16, 16), torch.randn(768)
    row("patch embed", "3->768 16x16/16 @1024", lambda: F.conv2d(img, w, b, stride=16))
    w, b = torch.randn(256, 64, 2, 2), torch.randn(64)
    row("convT 2x2", "256->64 @64x64", lambda: F.conv_transpose2d(x, w, b, stride=2))
    return rows


def max_abs(a, ref):
    return float((a.double() - ref.double()).abs().max())


def check(sam, emb, fixtures):
    """Max abs differences to the fixture's float64 references."""
    ref = torch.from_numpy(np.load(os.path.join(fixtures, "image_embeddings.npy")))
    out = {"image_embeddings": max_abs(emb.cpu(), ref)}
    with open(os.path.join(fixtures, "cases.jsonl")) as f:
        cases = {c["case"]: c for c in map(json.loads, f)}
    for name in ("box", "box_multi", "boxes_batch3"):
        c = cases[name]
        boxes = torch.tensor(c["boxes"], dtype=torch.float32, device=emb.device)
        logits, iou = (t.cpu() for t in sam.decode(emb, boxes, bool(c["multimask"])))
        ref = torch.from_numpy(np.load(os.path.join(fixtures, f"case_{name}_low_res_logits.npy")))
        out[f"{name}_logits"] = max_abs(logits, ref)
        out[f"{name}_logits_mean"] = float((logits.double() - ref.double()).abs().mean())
        out[f"{name}_iou"] = max_abs(iou, torch.from_numpy(np.load(os.path.join(fixtures, f"case_{name}_iou.npy"))))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pth", required=True, help="SAM/MedSAM checkpoint (state dict, SAM key names)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads; set OPENBLAS_NUM_THREADS to the same (run.sh does)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N")
    ap.add_argument("--dec-heads", type=int, default=8, help="decoder heads (not in the checkpoint)")
    ap.add_argument("--check", metavar="DIR", help="fixture folder: time on its image and compare with its references")
    ap.add_argument("--no-kernels", action="store_true")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: the encoder and decoder on the GPU")
    args = ap.parse_args()
    gpu = args.device == "cuda"
    if gpu:
        if not torch.cuda.is_available():
            sys.exit("torch_ref.py: --device cuda: torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        args.no_kernels = True

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeat": args.repeat,
           "kernels": [], "stages": {}}
    if not args.no_kernels:
        res["kernels"] = bench_kernels(args.repeat)

    t = time.perf_counter()
    sd = torch.load(args.pth, map_location="cpu")
    sd = sd.get("model", sd)
    # A single sample: loading twice would only inflate the peak RSS.
    res["stages"]["open_weights"] = (time.perf_counter() - t) * 1e3
    sd = {k: (v.float() if v.is_floating_point() else v).to(args.device) for k, v in sd.items()}
    sam = Sam(sd, args.dec_heads)

    if args.check:
        u8 = np.load(os.path.join(args.check, "image_1024_u8.npy"))
        image = torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 255
    else:
        image = torch.rand(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    image = image.to(args.device)
    if gpu:
        res["device"] = torch.cuda.get_device_name()
        sam.encode(image, {})  # warm-up: cuBLAS handles, kernel loading

    # Stage times: each stage's best over the runs (so they need not add up
    # to the best total).
    best = {}
    for _ in range(args.repeat):
        st = {}
        t = time.perf_counter()
        emb = sam.encode(image, st)
        sync()
        st["encoder"] = time.perf_counter() - t
        for k, v in st.items():
            best[k] = min(best.get(k, math.inf), v * 1e3)
    res["stages"].update(best)
    if gpu:
        res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    for n in (1, 3):
        boxes = torch.tensor(BOXES[:n], device=args.device)
        res["stages"][f"decoder_box{n}"] = best_of(lambda: (sam.decode(emb, boxes), sync()),
                                                   args.repeat)
    if args.check:
        res["check"] = check(sam, emb, args.check)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.json:
        json.dump(res, sys.stdout, indent=1)
        print()
        return
    print(f"torch {res['torch']}, {res.get('device', str(res['threads']) + ' threads')}, "
          f"best of {args.repeat}")
    for r in res["kernels"]:
        print(f"  {r['op'] + ' ' + r['shape']:44s} {r['ms']:10.2f} ms")
    for k, v in res["stages"].items():
        print(f"  {k:44s} {v:10.2f} ms")
    for k, v in res.get("check", {}).items():
        print(f"  check {k:24s} {v:.3g}")
    print(f"  peak RSS {res['peak_rss_mb']:.0f} MB")
    if gpu:
        print(f"  peak GPU memory {res['gpu_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
