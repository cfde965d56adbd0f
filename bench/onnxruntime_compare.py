#!/usr/bin/env python3
"""The device runtime (tract) against ONNX Runtime on the same bundle graphs, one
thread each, on this machine: image encoding, one decode step, a whole greedy
caption; prints the device/ORT ratio per stage, FLOPs per caption and the GFLOP/s
each engine achieves. Not run by CI.

    python3 -m venv /tmp/ortenv && /tmp/ortenv/bin/pip install onnxruntime onnx numpy
    cargo build --release -p edgevlm-device
    /tmp/ortenv/bin/python bench/onnxruntime_compare.py --bundle models/synthetic.bundle \\
        --device target/release/edgevlm-device [--image some.png] [--runs 50]
"""
import argparse, json, os, statistics, subprocess, tempfile, time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def p50(f, runs):
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def flops(path, dims):
    """2*M*K*N per MatMul and 2*Cout*Hout*Wout*Cin*kh*kw per Conv, with the graph
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
        if node.op_type == "MatMul":
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
    ap.add_argument("--runs", type=int, default=50)
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
    # The caption decoder's own vocabulary when the bundle has one (real-photo bundles).
    tokenizer = os.path.join(work, "decoder_tokenizer.json")
    if not os.path.exists(tokenizer):
        tokenizer = os.path.join(work, "tokenizer.json")
    vocab = json.load(open(tokenizer))["model"]["vocab"]
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    dec = manifest["decoder"]
    g = lambda name: os.path.join(work, name + ".onnx")
    image_encoder, prefix, step = session(g("image_encoder")), session(g("caption_decoder")), session(g("caption_decoder_step"))

    tokens = image_encoder.run(None, {"image": pixels})[0]

    def caption():
        out = prefix.run(None, {"image_tokens": tokens, "ids": np.array([[cls]], dtype=np.int64)})
        cache, ids = out[1:], [cls]
        while len(ids) < dec["max_len"]:
            nxt = int(np.argmax(out[0][0, -1]))
            ids.append(nxt)
            if nxt == sep:
                break
            feed = {"image_tokens": tokens, "ids": np.array([[nxt]], dtype=np.int64),
                    "position": np.array([len(ids) - 1], dtype=np.int64)}
            for i in range(dec["layers"]):
                feed[f"past_key_{i}"], feed[f"past_value_{i}"] = cache[2 * i], cache[2 * i + 1]
            out = step.run(None, feed)
            cache = out[1:]
        return ids

    ids = caption()
    past = max(len(ids) // 2, 1)
    shape = (1, dec["heads"], past, dec["d_head"])
    step_feed = {"image_tokens": tokens, "ids": np.array([[cls]], dtype=np.int64),
                 "position": np.array([past], dtype=np.int64)}
    for i in range(dec["layers"]):
        step_feed[f"past_key_{i}"] = np.zeros(shape, np.float32)
        step_feed[f"past_value_{i}"] = np.zeros(shape, np.float32)
    ort_ms = {
        "image_encoder": p50(lambda: image_encoder.run(None, {"image": pixels}), args.runs),
        "decode_step": p50(lambda: step.run(None, step_feed), args.runs),
        "caption": p50(caption, args.runs),
    }
    ort_ms["caption_with_image"] = ort_ms["caption"] + ort_ms["image_encoder"]

    # Greedy, no reranking: the same work as the ORT loop above.
    report = json.loads(subprocess.run([args.device, "bench", "--bundle", args.bundle, image,
                                        "--runs", str(args.runs), "--beam", "1", "--consensus", "0"],
                                       check=True, capture_output=True, text=True).stdout)
    device_ms = {
        "image_encoder": report["image_encoder"]["p50_ms"],
        "decode_step": report["per_token_ms"],
        "caption": report["decoding"]["p50_ms"],
    }
    device_ms["caption_with_image"] = device_ms["caption"] + device_ms["image_encoder"]

    n_tok = tokens.shape[1]
    f_image = flops(g("image_encoder"), {"image": [1, 3, s, s]})
    f_caption = flops(g("caption_decoder"), {"image_tokens": [1, n_tok, tokens.shape[2]], "ids": [1, 1]})
    for t in range(1, len(ids) - 1):
        dims = {"image_tokens": [1, n_tok, tokens.shape[2]], "ids": [1, 1], "position": [1]}
        for i in range(dec["layers"]):
            dims[f"past_key_{i}"] = dims[f"past_value_{i}"] = [1, dec["heads"], t, dec["d_head"]]
        f_caption += flops(g("caption_decoder_step"), dims)
    total = f_image + f_caption
    print(f"caption of {len(ids) - 2} words; {total / 1e6:.1f} MFLOPs per caption "
          f"(image encoder {f_image / 1e6:.1f}, decoding {f_caption / 1e6:.1f})")
    print(f"{'stage':<20}{'device ms':>12}{'ORT ms':>10}{'device/ORT':>12}")
    for k in device_ms:
        print(f"{k:<20}{device_ms[k]:>12.3f}{ort_ms[k]:>10.3f}{device_ms[k] / ort_ms[k]:>12.2f}")
    for name, ms in [("device", device_ms), ("ORT", ort_ms)]:
        print(f"{name}: {total / (ms['caption_with_image'] * 1e-3) / 1e9:.2f} GFLOP/s over a whole caption")
    print(f"device peak RSS {report['peak_rss_mib']:.1f} MiB; ORT {ort.__version__}")


if __name__ == "__main__":
    main()
