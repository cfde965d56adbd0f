//! Train → export → device: a tiny model trained through the CLI is exported to
//! bundles, and the device runtime (tract) answers and captions the held-out
//! scenes exactly as the host (burn) does. Broken bundles are refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use edgevlm::data::store::ImageStore;
use edgevlm::data::synth::{self, SynthOptions};
use edgevlm::eval::predict::{BundlePredictor, BurnPredictor, Predictor};
use edgevlm::export::blocks::{self, DecoderInput, DecoderMemory};
use edgevlm::export::graphs::{self, TokenShape};
use edgevlm::export::onnx::{Dim, GraphBuilder};
use edgevlm::export::quantize::WeightFormat;
use edgevlm::model::decoder::CaptionDecoder;
use edgevlm::model::saved::SavedModel;
use edgevlm_device::runtime::{profile, Runtime};
use edgevlm_shared::bundle::{io, Bundle};
use edgevlm_shared::preprocess::load_image;
use edgevlm_shared::search::DecodeOptions;
use edgevlm_tests::binary;
use prost::Message;

fn scenes(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let out = dir.join(format!("scenes-{seed}"));
    synth::write(
        &out,
        &SynthOptions {
            count: n,
            seed,
            size: 32,
            questions_per_kind: 3,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    out
}

fn edgevlm(args: &[&str], paths: &[(&str, &Path)]) {
    let mut cmd = Command::new(binary("edgevlm"));
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "edgevlm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn device(args: &[&str], bundle: &Path) -> std::process::Output {
    Command::new(binary("edgevlm-device"))
        .args(args)
        .arg("--bundle")
        .arg(bundle)
        .output()
        .unwrap()
}

/// Trains a tiny model with a spatial VQA head and a caption decoder; returns its
/// folder. Pretrained with `--grid`, so the VQA head starts from the spatial MLM head.
fn tiny_model(tmp: &Path, train: &Path) -> PathBuf {
    let pre = tmp.join("pre");
    let common = ["--quiet", "--batch-size", "8", "--max-steps", "12", "--seed", "5"];
    let mut args = vec!["pretrain", "--tiny", "--grid"];
    args.extend(common);
    edgevlm(&args, &[("--data", train), ("--out", &pre)]);
    let vqa = tmp.join("vqa");
    // The spatial head: its graph reads the pixels, not the image tokens. (The
    // flashing tests' bundles carry the fused head.)
    let mut args = vec!["finetune", "vqa", "--vqa-head", "spatial"];
    args.extend(common);
    edgevlm(&args, &[("--from", &pre), ("--data", train), ("--out", &vqa)]);
    let model = tmp.join("model");
    let mut args = vec!["finetune", "caption"];
    args.extend(common);
    edgevlm(&args, &[("--from", &vqa), ("--data", train), ("--out", &model)]);
    model
}

#[test]
fn device_answers_and_captions_equal_the_host_and_broken_bundles_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let train = scenes(tmp.path(), 48, 11);
    let test = scenes(tmp.path(), 10, 12);
    let model = tiny_model(tmp.path(), &train);
    let bundle = tmp.path().join("m.bundle");
    let int8 = tmp.path().join("m8.bundle");
    edgevlm(&["export"], &[("--model", &model), ("--out", &bundle)]);
    edgevlm(&["export", "--int8"], &[("--model", &model), ("--out", &int8)]);

    // Host (burn) and device (tract) on every held-out question and image.
    let saved = SavedModel::load(&model, &Device::flex()).unwrap();
    let host = BurnPredictor::new(&saved, Device::flex());
    let dev = BundlePredictor::new(Runtime::load(&bundle).unwrap());
    let records: Vec<serde_json::Value> = std::fs::read_to_string(test.join("questions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut questions: Vec<(usize, String)> = Vec::new();
    for r in &records {
        let path = test.join(r["image"].as_str().unwrap());
        if paths.last() != Some(&path) {
            paths.push(path);
        }
        questions.push((paths.len() - 1, r["question"].as_str().unwrap().to_string()));
    }
    let store = ImageStore::load(paths.clone(), &saved.meta.preprocess).unwrap();
    let host_answers = host.answers(&store, &questions).unwrap();
    let dev_answers = dev.answers(&store, &questions).unwrap();
    assert!(questions.len() >= 50, "{} questions", questions.len());
    for (h, d) in host_answers.iter().zip(&dev_answers) {
        assert_eq!(h.0, d.0);
        assert!((h.1 - d.1).abs() < 1e-4, "probabilities {} vs {}", h.1, d.1);
    }
    let indices: Vec<usize> = (0..paths.len()).collect();
    assert_same_captions(&host, &dev, &store, &indices, "host and device");
    let host_emb = host.image_embeddings(&store, &indices).unwrap();
    let dev_emb = dev.image_embeddings(&store, &indices).unwrap();
    for (h, d) in host_emb.iter().zip(&dev_emb) {
        for (a, b) in h.iter().zip(d) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    // The device binary: self-test, an answer the host gives too, info.
    for b in [&bundle, &int8] {
        let out = device(&["selftest"], b);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("self-test passed"));
    }
    let (image, question) = (&paths[questions[0].0], &questions[0].1);
    let out = device(&["ask", image.to_str().unwrap(), question], &bundle);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host_answers[0].0);
    let info = Command::new(binary("edgevlm-device"))
        .arg("info")
        .arg(&int8)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Int8PerChannel") && info.contains("vqa.onnx") && info.contains("sha256"),
        "{info}"
    );
    let (size, size8) = (
        std::fs::metadata(&bundle).unwrap().len(),
        std::fs::metadata(&int8).unwrap().len(),
    );
    assert!(size8 * 10 < size * 4, "int8 {size8} bytes vs f32 {size}");

    // Profiling times every node without changing what the graphs compute.
    let runtime = Runtime::load(&bundle).unwrap();
    let encoded = runtime.encode_image(&load_image(image).unwrap()).unwrap();
    let opts = DecodeOptions {
        beam_size: 3,
        max_len: 12,
        ..Default::default()
    };
    let plain = runtime.caption(&encoded, opts).unwrap();
    profile::start();
    let profiled_encoding = runtime.encode_image(&load_image(image).unwrap()).unwrap();
    let profiled = runtime.caption(&encoded, opts).unwrap();
    let table = profile::finish().unwrap();
    assert_eq!(plain, profiled);
    assert_eq!(encoded.embedding, profiled_encoding.embedding);
    let graph = |name: &str| table.graphs.iter().find(|g| g.graph == name);
    let encoder = graph("image_encoder").expect("the image encoder was profiled");
    assert_eq!(encoder.calls, 1);
    assert!(encoder.fma > 0, "{encoder:?}");
    assert!(encoder.in_nodes_ms <= encoder.ms, "{encoder:?}");
    let nodes = table.nodes.iter().filter(|n| n.graph == "image_encoder");
    assert_eq!(nodes.clone().map(|n| n.fma).sum::<u64>(), encoder.fma);
    assert!(
        nodes.clone().any(|n| n.fma > 0 && n.calls == 1),
        "a product with its cost"
    );
    assert!(graph("caption_decoder").is_some_and(|g| g.calls == 1));
    assert!(profile::finish().is_none(), "finish stops the profile");
    let out = Command::new(binary("edgevlm-device"))
        .args(["bench", "--runs", "1", "--profile", "--bundle"])
        .arg(&bundle)
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["profile"]["peak_gflops"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["stage_gflops"]["image_encoder"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["text_encoder"]["runs"].as_u64() == Some(1), "{report}");
    assert!(report["vqa"]["runs"].as_u64() == Some(1), "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("| image_encoder |"));

    // Truncated and tampered bundles fail with the file and the reason.
    let bytes = std::fs::read(&bundle).unwrap();
    let cut = tmp.path().join("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = String::from_utf8_lossy(&device(&["selftest"], &cut).stderr).into_owned();
    assert!(err.contains("cut.bundle") && err.contains("truncated"), "{err}");
    let mut tampered = bytes.clone();
    let at = bytes.len() - 100;
    tampered[at] ^= 0xff;
    let bad = tmp.path().join("bad.bundle");
    std::fs::write(&bad, &tampered).unwrap();
    let err = String::from_utf8_lossy(&device(&["selftest"], &bad).stderr).into_owned();
    assert!(err.contains("bad.bundle") && err.contains("sha256"), "{err}");
    let not_a_bundle = device(&["selftest"], &image.clone());
    assert!(String::from_utf8_lossy(&not_a_bundle.stderr).contains("not an edgevlm bundle"));

    // A VQA graph that does not read the text encoder's states is refused by name.
    let whole = Bundle::read(&bundle).unwrap();
    let text_graph = whole.file("text_encoder.onnx").unwrap().to_vec();
    let err = Runtime::from_bundle(&with_files(&whole, &[("vqa.onnx".into(), text_graph)]))
        .err()
        .expect("a VQA graph reading token ids is refused")
        .to_string();
    assert!(
        err.contains("vqa") && err.contains("text_states") && err.contains("export the model again"),
        "{err}"
    );

    // A bundle of the older kind, whose step graph projects the image tokens on every
    // call, still captions, and as the newer one does.
    let side = saved.meta.preprocess.image_size as usize;
    let graphs = older_decoder_graphs(&saved.model.decoder, graphs::token_shape(&saved.model, side));
    let older = BundlePredictor::new(Runtime::from_bundle(&with_files(&whole, &graphs)).unwrap());
    assert_same_captions(
        &older,
        &dev,
        &store,
        &indices,
        "a bundle whose step graph reads the image tokens and a newer one",
    );
}

/// `bundle` with the files named in `replaced` holding their bytes instead.
fn with_files(bundle: &Bundle, replaced: &[(String, Vec<u8>)]) -> Bundle {
    let files = bundle
        .entries()
        .into_iter()
        .map(|(name, kind, bytes)| {
            let bytes = replaced
                .iter()
                .find(|(file, _)| *file == name)
                .map_or(bytes, |(_, new)| new.clone());
            (name, kind, bytes)
        })
        .collect();
    Bundle::new(bundle.manifest.clone(), files)
}

/// Both give the same captions of `indices`, greedy and with a beam of 3.
fn assert_same_captions(
    a: &impl Predictor,
    b: &impl Predictor,
    store: &ImageStore,
    indices: &[usize],
    what: &str,
) {
    for beam in [1, 3] {
        let opts = DecodeOptions {
            beam_size: beam,
            max_len: 12,
            ..Default::default()
        };
        assert_eq!(
            a.captions(store, indices, opts).unwrap(),
            b.captions(store, indices, opts).unwrap(),
            "beam {beam}: {what}"
        );
    }
}

/// The decoder graphs as bundles exported before the prefix graph gave the image's
/// keys and values were: the prefix outputs the logits and the cache only, and the
/// step graph reads the image tokens and projects them on every call.
fn older_decoder_graphs(decoder: &CaptionDecoder, image: TokenShape) -> [(String, Vec<u8>); 2] {
    let (batch, vocab) = (
        Dim::Named("batch"),
        decoder.token_embedding.weight.val().dims()[0],
    );
    let a = &decoder.layers[0].self_attention;
    let cache = |len: &'static str| {
        [
            batch.clone(),
            Dim::Fixed(a.heads()),
            Dim::Named(len),
            Dim::Fixed(a.d_head()),
        ]
    };
    let graph = |name: &str, step: bool| {
        let mut g = GraphBuilder::new(name, WeightFormat::F32);
        let tokens = g.input_f32(
            io::IMAGE_TOKENS,
            &[Dim::Fixed(1), Dim::Fixed(image[0]), Dim::Fixed(image[1])],
        );
        let len = if step { Dim::Fixed(1) } else { Dim::Named("len") };
        let ids = g.input_i64(io::IDS, &[batch.clone(), len.clone()]);
        let position = step.then(|| g.input_i64(io::POSITION, &[Dim::Fixed(1)]));
        let input = match &position {
            Some(position) => DecoderInput::Step {
                ids: &ids,
                position,
                past: (0..decoder.layers.len())
                    .map(|i| {
                        (
                            g.input_f32(&io::past_key(i), &cache("past")),
                            g.input_f32(&io::past_value(i), &cache("past")),
                        )
                    })
                    .collect(),
            },
            None => DecoderInput::Prefix { ids: &ids },
        };
        let out = blocks::caption_decoder(&mut g, input, DecoderMemory::Tokens(&tokens), decoder);
        g.output(&out.logits, io::LOGITS, &[batch.clone(), len, Dim::Fixed(vocab)]);
        let grown = if step { "past_plus_one" } else { "len" };
        for (i, (k, v)) in out.cache.iter().enumerate() {
            g.output(k, &io::present_key(i), &cache(grown));
            g.output(v, &io::present_value(i), &cache(grown));
        }
        (io::graph_file(name), g.finish().encode_to_vec())
    };
    [graph(io::CAPTION_DECODER, false), graph(io::CAPTION_STEP, true)]
}

/// The dependency closure of `edgevlm-device` in Cargo.lock has no burn crate.
#[test]
fn burn_is_not_in_the_device_dependency_tree() {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock")).unwrap();
    let mut deps: std::collections::HashMap<String, Vec<String>> = Default::default();
    for block in lock.split("[[package]]").skip(1) {
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .map(|n| n.trim_end_matches('"').to_string())
            .unwrap();
        let list = block
            .split("dependencies = [")
            .nth(1)
            .map(|d| d.split(']').next().unwrap_or(""))
            .unwrap_or("");
        let names = list
            .split(',')
            .filter_map(|d| d.trim().trim_matches('"').split(' ').next().map(str::to_string))
            .filter(|d| !d.is_empty())
            .collect();
        deps.entry(name).or_default().extend::<Vec<String>>(names);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec!["edgevlm-device".to_string()];
    while let Some(name) = stack.pop() {
        if seen.insert(name.clone()) {
            stack.extend(deps.get(&name).cloned().unwrap_or_default());
        }
    }
    assert!(
        seen.contains("tract-onnx") && seen.contains("edgevlm-shared"),
        "{seen:?}"
    );
    let burn: Vec<&String> = seen.iter().filter(|n| n.starts_with("burn")).collect();
    assert!(burn.is_empty(), "the device depends on {burn:?}");
    // The host does depend on burn: the walk is not vacuous.
    assert!(deps["edgevlm"].iter().any(|d| d == "burn"));
}

/// `edgevlm-device run` with a directory camera: every new file is captioned and
/// asked about; a corrupt file becomes an error event naming it and the loop goes on.
#[test]
fn run_loop_describes_each_new_frame_and_survives_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let train = scenes(tmp.path(), 48, 31);
    let model = tiny_model(tmp.path(), &train);
    let bundle = tmp.path().join("m.bundle");
    edgevlm(&["export"], &[("--model", &model), ("--out", &bundle)]);
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::copy(train.join("images/000000.png"), inbox.join("a.png")).unwrap();
    std::fs::write(inbox.join("b.png"), b"truncated").unwrap();
    std::fs::copy(train.join("images/000001.png"), inbox.join("c.png")).unwrap();
    let config = tmp.path().join("device.toml");
    std::fs::write(
        &config,
        format!(
            "device = \"test-board\"\nbundle = {:?}\nunsigned_bundle = true\ntick_ms = 1\nquestions = [\"how many objects are there?\"]\n\
             events.file = \"events.jsonl\"\n[camera]\nkind = \"directory\"\npath = {:?}\nexisting = true\n\
             [trigger]\nkind = \"frame\"\n",
            bundle, inbox
        ),
    )
    .unwrap();
    let out = Command::new(binary("edgevlm-device"))
        .args(["run", "--max-events", "3", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(tmp.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    let runtime = Runtime::load(&bundle).unwrap();
    for (event, name) in [(&events[0], "a.png"), (&events[2], "c.png")] {
        assert!(event["source"].as_str().unwrap().ends_with(name));
        let image = image::open(inbox.join(name)).unwrap().to_rgb8();
        let encoded = runtime.encode_image(&image).unwrap();
        let caption = runtime.caption(&encoded, DecodeOptions::default()).unwrap();
        assert_eq!(event["caption"], caption.as_str());
        let answer = runtime.answer(&encoded, "how many objects are there?").unwrap();
        assert_eq!(event["answers"][0]["answer"], answer.answer.as_str());
        assert_eq!(event["device"], "test-board");
        assert!(event["latency"]["total_ms"].as_f64().unwrap() > 0.0);
    }
    let error = events[1]["error"].as_str().unwrap();
    assert!(error.contains("b.png"), "{error}");
    assert_eq!(events[1]["seq"], 1);
}
