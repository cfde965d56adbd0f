//! `edgevlm train --recipe flickr8k` end to end on a small folder in the Flickr8k
//! layout (rendered scenes with their template captions, made by the test), with the
//! real pretrained towers from `models/pretrained`: the stages train, the feature
//! cache is reused and invalidated by a changed image, `--resume` finishes from the
//! stages on disk, and the model folder serves `eval`, `caption` and `match`.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::synth::{captions, render, Scene};
use edgevlm_tests::{binary, run_ok};

fn towers() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained");
    assert!(
        dir.join("minilm-l6/model.safetensors").is_file(),
        "{} is missing: run models/fetch-pretrained.sh",
        dir.display()
    );
    dir
}

/// `train` + `dev` scenes as `Images/*.jpg`, `captions.txt` and the split lists.
fn flickr_layout(dir: &Path, train: usize, dev: usize) {
    std::fs::create_dir_all(dir.join("Images")).unwrap();
    let mut rng = SplitMix64::new(8);
    let mut csv = String::from("image,caption\n");
    let (mut train_list, mut dev_list) = (String::new(), String::new());
    for i in 0..train + dev {
        let scene = Scene::generate(&mut rng, 96);
        let name = format!("{i:04}_scene.jpg");
        render(&scene).save(dir.join("Images").join(&name)).unwrap();
        let caps = captions(&scene);
        for k in 0..5 {
            // Quoted, with a comma inside, as real Flickr8k rows can be.
            csv.push_str(&format!(
                "{name},\"{}, seen from above .\"\n",
                caps[k % caps.len()]
            ));
        }
        let list = if i < train { &mut train_list } else { &mut dev_list };
        list.push_str(&name);
        list.push('\n');
    }
    std::fs::write(dir.join("captions.txt"), csv).unwrap();
    std::fs::write(dir.join("Flickr_8k.trainImages.txt"), train_list).unwrap();
    std::fs::write(dir.join("Flickr_8k.devImages.txt"), dev_list).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `edgevlm train --recipe flickr8k`, returning (success, stdout, stderr).
fn train(data: &Path, out: &Path, cache: &Path, extra: &[&str]) -> (bool, String, String) {
    let towers = towers();
    let mut args = vec![
        "train",
        "--recipe",
        "flickr8k",
        "--data",
        s(data),
        "--out",
        s(out),
        "--cache",
        s(cache),
        "--towers",
        s(&towers),
        "--align-epochs",
        "12",
        "--patience",
        "8",
        "--beam",
        "2",
    ];
    if !extra.contains(&"--caption-epochs") {
        args.extend_from_slice(&["--caption-epochs", "8", "--scst-epochs", "2"]);
    }
    args.extend_from_slice(extra);
    let output = Command::new(binary("edgevlm")).args(&args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `edgevlm eval TASK` of a model folder on the dev split.
fn eval_dev(task: &str, model: &Path, data: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "eval",
        task,
        "--model",
        s(model),
        "--data",
        s(data),
        "--split",
        "dev",
    ];
    args.extend_from_slice(extra);
    run_ok("edgevlm", &args)
}

fn losses(metrics: &Path, name: &str) -> Vec<f64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[name]
                .as_f64()
                .unwrap()
        })
        .collect()
}

fn cache_files(cache: &Path) -> usize {
    std::fs::read_dir(cache).unwrap().count()
}

#[test]
fn flickr8k_recipe_trains_caches_resumes_and_serves_the_model_folder() {
    let root = tempfile::tempdir().unwrap();
    let (data, out, cache) = (
        root.path().join("f8k"),
        root.path().join("model"),
        root.path().join("cache"),
    );
    flickr_layout(&data, 24, 8);

    let (ok, stdout, stderr) = train(&data, &out, &cache, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("after alignment")
            && stdout.contains("after captioning")
            && stdout.contains("after reranking"),
        "{stdout}"
    );
    // The folder keeps its caption memory and the decoding its dev numbers came from.
    assert!(out.join("caption_memory.bin").is_file());
    let decoding: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("decoding.json")).unwrap()).unwrap();
    assert_eq!(decoding["beam_size"], 2);
    assert_eq!(decoding["consensus"]["neighbours"], 30);
    // Four caches: images and texts of train and dev.
    assert_eq!(cache_files(&cache), 4);

    // Every objective of both stages learned something on the training pairs.
    let itc = losses(&out.join("align/metrics.jsonl"), "itc_loss");
    let itm = losses(&out.join("align/metrics.jsonl"), "itm_loss");
    assert_eq!(itc.len(), 12);
    assert!(itc[11] < itc[0] * 0.8, "ITC loss {itc:?}");
    assert!(itm.iter().all(|v| v.is_finite()));
    let caption = losses(&out.join("caption/metrics.jsonl"), "caption_loss");
    assert!(
        caption[caption.len() - 1] < caption[0] * 0.75,
        "caption loss {caption:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["dev_images"], 8);
    assert_eq!(report["final_dev"]["stage"], "after reranking");
    assert_eq!(report["examples"].as_array().unwrap().len(), 8);
    assert!(report["final_dev"]["cider_d"].as_f64().unwrap() >= 0.0);
    // Early stopping kept the best dev CIDEr-D epoch's weights.
    let dev_log = std::fs::read_to_string(out.join("caption/dev.jsonl")).unwrap();
    assert_eq!(dev_log.lines().count(), 8);
    // The self-critical stage sampled captions, scored them and was judged on dev.
    let rewards = losses(&out.join("scst/metrics.jsonl"), "sample_cider");
    assert_eq!(rewards.len(), 2);
    assert!(rewards.iter().all(|r| r.is_finite() && *r >= 0.0), "{rewards:?}");
    let dev_log = std::fs::read_to_string(out.join("scst/dev.jsonl")).unwrap();
    assert_eq!(dev_log.lines().count(), 2);

    // A rerun with --resume reuses every cache and every finished stage.
    let (ok, stdout2, stderr) = train(&data, &out, &cache, &["--resume"]);
    assert!(ok, "{stderr}");
    for what in [
        "train: image features from",
        "dev: image features from",
        "train: text features from",
    ] {
        assert!(stderr.contains(what), "no `{what}` in {stderr}");
    }
    assert_eq!(
        stdout2.lines().find(|l| l.starts_with("after captioning")),
        stdout.lines().find(|l| l.starts_with("after captioning"))
    );

    // Changing one training image invalidates the train image cache only. (This run
    // also shows half the caption stage's photos mirrored, from a cache of its own.)
    let image = data.join("Images/0000_scene.jpg");
    render(&Scene::generate(&mut SplitMix64::new(99), 96))
        .save(&image)
        .unwrap();
    let (ok, _, stderr) = train(
        &data,
        &root.path().join("model2"),
        &cache,
        &["--caption-epochs", "1", "--scst-epochs", "0", "--mirror", "0.5"],
    );
    assert!(ok, "{stderr}");
    let mirrored = losses(&root.path().join("model2/caption/metrics.jsonl"), "caption_loss");
    assert!(mirrored.iter().all(|v| v.is_finite()), "{mirrored:?}");
    assert!(!stderr.contains("train: image features from"), "{stderr}");
    assert!(stderr.contains("dev: image features from"), "{stderr}");
    assert_eq!(cache_files(&cache), 6);

    // The folder is a model for eval, caption and match.
    let eval = eval_dev("caption", &out, &data, &["--beam", "2", "--length-penalty", "0"]);
    assert!(
        eval.contains("CIDEr-D") && eval.contains("images     8"),
        "{eval}"
    );
    let eval_report = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("eval-caption-dev.json")).unwrap()).unwrap()
    };
    let report = eval_report();
    assert_eq!(report["beam_size"], 2);
    assert_eq!(report["length_penalty"], 0.0);
    assert_eq!(report["consensus"]["neighbours"], 30);
    // Flags override the folder's decoding; --consensus 0 keeps the beam's best.
    eval_dev("caption", &out, &data, &["--consensus", "0", "--beam", "1"]);
    let report = eval_report();
    assert_eq!(report["beam_size"], 1);
    assert!(report["consensus"].is_null(), "{report}");
    eval_dev(
        "caption",
        &out,
        &data,
        &["--consensus", "5", "--consensus-weight", "0.5"],
    );
    let report = eval_report();
    assert_eq!(report["consensus"]["neighbours"], 5);
    assert_eq!(report["consensus"]["weight"], 0.5);
    let eval = eval_dev("retrieval", &out, &data, &[]);
    assert!(eval.contains("images 8 texts 40"), "{eval}");
    let dev_image = data.join("Images/0030_scene.jpg");
    let caption = run_ok("edgevlm", &["caption", s(&dev_image), "--model", s(&out)]);
    assert!(!caption.trim().is_empty());
    let scores = run_ok(
        "edgevlm",
        &[
            "match",
            s(&dev_image),
            "--model",
            s(&out),
            "a small red circle",
            "a dog",
        ],
    );
    assert_eq!(scores.lines().count(), 2, "{scores}");
    for line in scores.lines() {
        let value: f32 = line.split_whitespace().next().unwrap().parse().unwrap();
        assert!((-1.0..=1.0).contains(&value), "{line}");
    }

    // The same model as a bundle: the device decodes and reranks as the host does.
    check_bundles(&out, &data, root.path());

    // Without its caption memory the folder still captions, but cannot rerank.
    std::fs::remove_file(out.join("caption_memory.bin")).unwrap();
    eval_dev("caption", &out, &data, &[]);
    assert!(eval_report()["consensus"].is_null());
    let output = Command::new(binary("edgevlm"))
        .args(["caption", s(&dev_image), "--model", s(&out), "--consensus", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("caption_memory.bin"),
        "{stderr}"
    );

    // A dropout or mirror chance that is no probability is refused before any work.
    let (ok, _, stderr) = train(&data, &root.path().join("model5"), &cache, &["--dropout", "1"]);
    assert!(
        !ok && stderr.contains("--dropout 1: expected a probability"),
        "{stderr}"
    );
    let (ok, _, stderr) = train(&data, &root.path().join("model5"), &cache, &["--mirror", "1.5"]);
    assert!(
        !ok && stderr.contains("--mirror 1.5: expected a probability"),
        "{stderr}"
    );

    // A corrupt image is refused with its name; a missing split list likewise.
    std::fs::write(&image, b"not a jpeg").unwrap();
    let (ok, _, stderr) = train(&data, &root.path().join("model3"), &cache, &[]);
    assert!(!ok && stderr.contains("0000_scene.jpg"), "{stderr}");
    std::fs::remove_file(data.join("Flickr_8k.devImages.txt")).unwrap();
    let (ok, _, stderr) = train(&data, &root.path().join("model4"), &cache, &[]);
    assert!(!ok && stderr.contains("Flickr_8k.devImages.txt"), "{stderr}");
}

/// Exports the model folder (f32 and int8) and checks the device against the host:
/// the f32 bundle's reranked dev captions and corpus scores equal the folder's, its
/// ITC scores match within 1e-3, and `edgevlm-device caption` and `match` serve it.
fn check_bundles(model: &Path, data: &Path, root: &Path) {
    let (f32_bundle, int8_bundle) = (root.join("photo.bundle"), root.join("photo8.bundle"));
    let dev_image = data.join("Images/0030_scene.jpg");
    run_ok(
        "edgevlm",
        &[
            "export",
            "--model",
            s(model),
            "--out",
            s(&f32_bundle),
            "--selftest-image",
            s(&dev_image),
        ],
    );
    run_ok(
        "edgevlm",
        &["export", "--int8", "--model", s(model), "--out", s(&int8_bundle)],
    );
    let info = run_ok("edgevlm-device", &["info", s(&f32_bundle)]);
    for file in ["decoder_tokenizer.json", "caption_memory.bin", "tokenizer.json"] {
        assert!(info.contains(file), "{file} not in {info}");
    }
    let selftest = run_ok("edgevlm-device", &["selftest", "--bundle", s(&f32_bundle)]);
    assert!(selftest.contains("self-test passed"), "{selftest}");

    let report = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    eval_dev("caption", model, data, &[]);
    let host = report(&model.join("eval-caption-dev.json"));
    eval_dev("caption", &f32_bundle, data, &[]);
    let device = report(&f32_bundle.with_extension("eval-caption-dev.json"));
    assert_eq!(
        device["consensus"], host["consensus"],
        "the bundle reranks as the folder does"
    );
    assert_eq!(device["beam_size"], host["beam_size"]);
    let captions = |r: &serde_json::Value| -> Vec<String> {
        r["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["caption"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(captions(&device), captions(&host));
    assert_eq!(device["cider_d"], host["cider_d"]);
    eval_dev("caption", &int8_bundle, data, &[]);
    let int8 = report(&int8_bundle.with_extension("eval-caption-dev.json"));
    assert_eq!(int8["examples"].as_array().unwrap().len(), 8);

    let on_device = run_ok(
        "edgevlm-device",
        &["caption", s(&dev_image), "--bundle", s(&f32_bundle)],
    );
    let on_host = run_ok("edgevlm", &["caption", s(&dev_image), "--model", s(model)]);
    assert_eq!(on_device.trim(), on_host.trim());

    let phrases = ["a small red circle", "a dog on the grass"];
    let scores = |out: String| -> Vec<f32> {
        out.lines()
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect()
    };
    let host_scores = scores(run_ok(
        "edgevlm",
        &[&["match", s(&dev_image), "--model", s(model)][..], &phrases[..]].concat(),
    ));
    let device_scores = scores(run_ok(
        "edgevlm-device",
        &[
            &["match", s(&dev_image), "--bundle", s(&f32_bundle)][..],
            &phrases[..],
        ]
        .concat(),
    ));
    assert_eq!(host_scores.len(), 2);
    for (h, d) in host_scores.iter().zip(&device_scores) {
        assert!(
            (h - d).abs() < 1e-3,
            "host {host_scores:?} device {device_scores:?}"
        );
    }
}
