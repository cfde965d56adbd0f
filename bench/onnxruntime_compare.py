#!/usr/bin/env python3
"""The device runtime (tract) against ONNX Runtime on the same bundle graphs, one
thread each, on this machine: image encoder, text encoder, one batched decode step
(rows = the bundle's beam), and the whole caption (image encoder + the search, with
the bundle's beam and the device's number of steps; reranking and preprocessing are
the device's own Rust, not graphs, and are left out of both). Prints the device/ORT
ratio per stage, FLOPs, the GFLOP/s each engine achieves and this core's peak (a
small FMA kernel in `edgevlm-device bench --profile`). Not run by CI.

ONNX Runtime is timed twice. By default it fuses an int8 bundle's
DequantizeLinear → MatMul into MatMulNBits at accuracy level 4, which quantizes the
activations to int8 as well: faster, but no longer the graph's f32 product (it
differs from the graph by far more than the 1e-4 the parity tests allow, printed as
"max |ORT − graph|"). "ORT exact" turns those fusions off
(`session.disable_quant_qdq`): the graph's own arithmetic, as the device runs it.
Both ratios are printed; the second compares the same computation.

    python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install onnxruntime onnx numpy
    cargo build --release -p edgevlm-device
    /tmp/ortenv/bin/python bench/onnxruntime_compare.py --bundle models/photo8.bundle \\
        --device target/release/edgevlm-device [--image some.jpg] [--runs 30]
"""
import argparse, json, os, statistics, subprocess, tempfile, time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference


def session(path, exact=False, plain=False):
    """ORT's default session; `exact`: without the int8-activation fusions of
    dequantized products; `plain`: no graph rewrites at all (the reference)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if plain
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    if exact:
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def deviation(sess, reference, feed):
    """The largest |difference| between a session's outputs on `feed` and the
    `reference` outputs."""
    return max(float(np.abs(a - b).max()) for a, b in zip(sess.run(None, feed), reference))


def p50(f, runs):
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def flops(path, dims):
    """2*M*K*N per MatMul (and Gemm) and 2*Cout*Hout*Wout*Cin*kh*kw per Conv, with the graph
    inputs fixed to `dims` (name -> shape) and shapes inferred by onnx."""
    model = onnx.load(path)
    for value in model.graph.input:
        for d, n in zip(value.type.tensor_type.shape.dim, dims[value.name]):
            d.ClearField("dim_param")
            d.dim_value = n
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = 0
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a and b:
                total += 2 * int(np.prod(a[:-1])) * a[-1] * b[-1]
        elif node.op_type == "Conv":
            w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
            if w and y:
                total += 2 * int(np.prod(y)) * int(np.prod(w[1:]))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--device", default="target/release/edgevlm-device")
    ap.add_argument("--image")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    subprocess.run([args.device, "unpack", args.bundle, "--out", work], check=True, stdout=subprocess.DEVNULL)
    manifest = json.load(open(os.path.join(work, "manifest.json")))
    image = args.image or os.path.join(work, manifest["selftest"]["image"])
    config = os.path.join(work, "preprocess.json")
    json.dump(manifest["preprocess"], open(config, "w"))
    pixels_path = os.path.join(work, "pixels.bin")
    subprocess.run([args.device, "preprocess", image, "--config", config, "--out", pixels_path],
                   check=True, stdout=subprocess.DEVNULL)
    s = manifest["preprocess"]["image_size"]
    pixels = np.fromfile(pixels_path, dtype="<f4").reshape(1, 3, s, s)
    dec = manifest["decoder"]
    g = lambda name: os.path.join(work, name + ".onnx")

    # The device first: its beam, steps per caption and caption length set the ORT work.
    report = json.loads(subprocess.run(
        [args.device, "--threads", "1", "bench", "--bundle", args.bundle, image, "--runs", str(args.runs),
         "--profile"], check=True, capture_output=True, text=True).stdout)
    graphs = {row["graph"]: row for row in report["profile"]["graphs"]}
    beam = report["beam"]
    steps = graphs.get("caption_decoder_step", {"calls": 0})["calls"]
    text_len = int(round(report["text_tokens"]))
    device_ms = {
        "image_encoder": report["image_encoder"]["p50_ms"],
        "text_encoder": report["text_encoder"]["p50_ms"],
        "decode_step": graphs["caption_decoder_step"]["ms_per_call"] if steps else float("nan"),
        "caption": report["image_encoder"]["p50_ms"] + report["decoding"]["p50_ms"],
    }

    names = ("image_encoder", "caption_decoder", "caption_decoder_step", "text_encoder")
    image_encoder, prefix, step, text = (session(g(n), exact=True) for n in names)
    tokens = image_encoder.run(None, {"image": pixels})[0]
    n_tok, d_tok = tokens.shape[1], tokens.shape[2]
    layers = dec["layers"]
    # Older bundles' step graph reads the image tokens and projects them on every
    # call; newer ones read the image's keys/values, which the prefix graph outputs.
    step_reads_tokens = "image_tokens" in [i.name for i in step.get_inputs()]

    def memory_feed(out):
        if step_reads_tokens:
            return {"image_tokens": tokens}
        kv = out[1 + 2 * layers:]
        return {f"image_{name}_{i}": kv[2 * i + j] for i in range(layers) for j, name in enumerate(("key", "value"))}

    past = max(steps // 2, 1)
    shape = (beam, dec["heads"], past, dec["d_head"])
    prefix_feed = {"image_tokens": tokens, "ids": np.zeros((1, 1), np.int64)}
    memory = memory_feed(prefix.run(None, prefix_feed))
    step_feed = dict(memory, ids=np.zeros((beam, 1), np.int64), position=np.array([past], dtype=np.int64))
    for i in range(layers):
        step_feed[f"past_key_{i}"] = np.zeros(shape, np.float32)
        step_feed[f"past_value_{i}"] = np.zeros(shape, np.float32)
    text_feed = {"ids": np.ones((1, text_len), np.int64), "mask": np.ones((1, text_len), np.float32)}
    text_inputs = [i.name for i in text.get_inputs()]
    text_feed = {k: v for k, v in text_feed.items() if k in text_inputs}
    feeds = ({"image": pixels}, prefix_feed, step_feed, text_feed)

    def timings(image_encoder, prefix, step, text):
        def search():
            """`steps` batched steps of `beam` rows after the prefix, the cache rows
            gathered by parent as the device does."""
            out = prefix.run(None, prefix_feed)
            memory = memory_feed(out)
            cache = out[1:1 + 2 * layers]
            logp = out[0][:, -1]
            rows = 1
            for t in range(steps):
                flat = (logp - logp.max(-1, keepdims=True)).reshape(-1)
                best = np.argpartition(-flat, beam)[:beam]
                parents, nxt = best // logp.shape[-1], best % logp.shape[-1]
                feed = dict(memory, ids=nxt.reshape(beam, 1).astype(np.int64),
                            position=np.array([t + 1], dtype=np.int64))
                for i in range(layers):
                    feed[f"past_key_{i}"] = np.repeat(cache[2 * i], beam, 0) if rows == 1 else cache[2 * i][parents]
                    feed[f"past_value_{i}"] = np.repeat(cache[2 * i + 1], beam, 0) if rows == 1 else cache[2 * i + 1][parents]
                out = step.run(None, feed)
                cache, logp, rows = out[1:], out[0][:, -1], beam
            return logp

        ms = {
            "image_encoder": p50(lambda: image_encoder.run(None, {"image": pixels}), args.runs),
            "text_encoder": p50(lambda: text.run(None, text_feed), args.runs),
            "decode_step": p50(lambda: step.run(None, step_feed), args.runs),
        }
        ms["caption"] = ms["image_encoder"] + p50(search, max(args.runs // 3, 3))
        return ms

    default = [session(g(n)) for n in names]
    # The unoptimized graph's outputs, once per graph, for both sessions to be measured against.
    graph_out = [session(g(n), plain=True).run(None, f) for n, f in zip(names, feeds)]
    off = {n: (deviation(d, r, f), deviation(e, r, f))
           for n, d, e, r, f in zip(names, default, (image_encoder, prefix, step, text), graph_out, feeds)}
    ort_ms = timings(*default)
    exact_ms = timings(image_encoder, prefix, step, text)

    f_image = flops(g("image_encoder"), {"image": [1, 3, s, s]})
    f_text = flops(g("text_encoder"), {k: [1, text_len] for k in text_inputs})
    memory_dims = {name: list(value.shape) for name, value in memory.items()}
    step_dims = lambda t: dict(memory_dims, ids=[beam, 1], position=[1],
                               **{f"past_{kv}_{i}": [beam, dec["heads"], t, dec["d_head"]]
                                  for i in range(layers) for kv in ("key", "value")})
    f_step = flops(g("caption_decoder_step"), step_dims(past))
    f_search = flops(g("caption_decoder"), {"image_tokens": [1, n_tok, d_tok], "ids": [1, 1]})
    for t in range(1, steps + 1):
        f_search += flops(g("caption_decoder_step"), step_dims(t))
    f = {"image_encoder": f_image, "text_encoder": f_text, "decode_step": f_step, "caption": f_image + f_search}
    peak = report["profile"]["peak_gflops"]
    print(f"bundle {os.path.basename(args.bundle)}: beam {beam}, {steps} steps a caption, text {text_len} tokens; "
          f"core peak {peak:.1f} GFLOP/s ({report['profile']['peak_kernel']}, one thread); ORT {ort.__version__}")
    print("| stage | MFLOP | device ms | ORT ms | ORT exact ms | device/ORT | device/ORT exact "
          "| device GFLOP/s | ORT GFLOP/s | ORT exact GFLOP/s | device % of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in device_ms:
        dg, og, eg = (f[k] / ms[k] / 1e6 for ms in (device_ms, ort_ms, exact_ms))
        print(f"| {k} | {f[k] / 1e6:.1f} | {device_ms[k]:.3f} | {ort_ms[k]:.3f} | {exact_ms[k]:.3f} "
              f"| {device_ms[k] / ort_ms[k]:.2f} | {device_ms[k] / exact_ms[k]:.2f} "
              f"| {dg:.1f} | {og:.1f} | {eg:.1f} | {100 * dg / peak:.0f} % |")
    print("max |ORT − graph| (default, exact) per graph: " +
          ", ".join(f"{n} {a:.1e} / {b:.1e}" for n, (a, b) in off.items()))
    print(f"device peak RSS {report['peak_rss_mib']:.1f} MiB captioning, "
          f"{report['peak_rss_with_text_mib']:.1f} MiB with the text tower")


if __name__ == "__main__":
    main()
