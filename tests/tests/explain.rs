//! Where the model looked: `edgevlm explain` (burn) and `edgevlm-device explain`
//! (tract) draw the same occlusion map of an answer, and `eval pointing` plays the
//! pointing game on synthetic scenes with the centre baseline beside it.

use std::path::Path;

use edgevlm::data::synth::{self, SynthOptions};
use edgevlm_tests::{output_with_paths, succeeded};
use serde_json::Value;

fn run(bin: &str, args: &[&str], paths: &[(&str, &Path)]) -> String {
    succeeded(output_with_paths(bin, args, paths), &format!("{bin} {args:?}"))
}

#[test]
fn host_and_device_draw_the_same_map_and_the_pointing_game_reports_a_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let scenes = root.join("scenes");
    synth::write(
        &scenes,
        &SynthOptions {
            count: 24,
            seed: 41,
            size: 32,
            questions_per_kind: 2,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    let common = ["--quiet", "--batch-size", "8", "--max-steps", "10", "--seed", "3"];
    let (pre, model, bundle) = (root.join("pre"), root.join("vqa"), root.join("v.bundle"));
    let mut args = vec!["pretrain", "--tiny"];
    args.extend(common);
    run("edgevlm", &args, &[("--data", &scenes), ("--out", &pre)]);
    let mut args = vec!["finetune", "vqa"];
    args.extend(common);
    run(
        "edgevlm",
        &args,
        &[("--from", &pre), ("--data", &scenes), ("--out", &model)],
    );
    run("edgevlm", &["export"], &[("--model", &model), ("--out", &bundle)]);

    let image = scenes.join("images/000003.png");
    let question = "what shape is the red object?";
    let (host_png, device_png) = (root.join("host.png"), root.join("device.png"));
    let host = run(
        "edgevlm",
        &["explain", image.to_str().unwrap(), "--question", question],
        &[("--model", &model), ("--out", &host_png)],
    );
    let device = run(
        "edgevlm-device",
        &["explain", image.to_str().unwrap(), "--question", question],
        &[("--bundle", &bundle), ("--out", &device_png)],
    );
    let peak = |out: &str| out.split("looked most at").nth(1).map(str::to_string);
    assert!(peak(&host).is_some(), "{host}");
    assert_eq!(peak(&host), peak(&device), "{host} vs {device}");
    assert!(
        !host.contains("where the head read it"),
        "the fused head: occlusion"
    );
    let (a, b) = (image::open(&host_png).unwrap(), image::open(&device_png).unwrap());
    assert_eq!(a.width(), 256, "scaled up to 256 pixels");
    assert!(a.height() > 256, "a colour bar under the map");
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));

    // The decoder's confidence in a word of a given caption: the same peak too.
    let word = ["--word", "red", "--caption", "a red square and a blue circle."];
    let mut args = vec!["explain", image.to_str().unwrap()];
    args.extend(word);
    let host = run("edgevlm", &args, &[("--model", &model), ("--out", &host_png)]);
    let device = run(
        "edgevlm-device",
        &args,
        &[("--bundle", &bundle), ("--out", &device_png)],
    );
    assert!(host.contains("log-probability of \"red\""), "{host}");
    assert!(peak(&host).is_some(), "{host}");
    assert_eq!(peak(&host), peak(&device), "{host} vs {device}");
    let mut args = vec!["explain", image.to_str().unwrap(), "--word", "zebra"];
    args.extend(["--caption", "a red square."]);
    let refused = output_with_paths("edgevlm", &args, &[("--model", &model), ("--out", &host_png)]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a word of the caption"), "{stderr}");

    // A spatial head's answer map is its own focus, on the host and on the board.
    let (spatial, spatial_bundle) = (root.join("spatial"), root.join("s.bundle"));
    let mut args = vec!["finetune", "vqa", "--vqa-head", "spatial"];
    args.extend(common);
    run(
        "edgevlm",
        &args,
        &[("--from", &pre), ("--data", &scenes), ("--out", &spatial)],
    );
    run(
        "edgevlm",
        &["export"],
        &[("--model", &spatial), ("--out", &spatial_bundle)],
    );
    let asked = ["explain", image.to_str().unwrap(), "--question", question];
    let host = run("edgevlm", &asked, &[("--model", &spatial), ("--out", &host_png)]);
    let device = run(
        "edgevlm-device",
        &asked,
        &[("--bundle", &spatial_bundle), ("--out", &device_png)],
    );
    assert!(host.contains("where the head read it"), "{host}");
    assert!(device.contains("where the head read it"), "{device}");
    assert_eq!(peak(&host), peak(&device), "{host} vs {device}");

    let report = root.join("pointing.json");
    run(
        "edgevlm",
        &["eval", "pointing", "--limit", "4"],
        &[("--model", &model), ("--data", &scenes), ("--report", &report)],
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["scenes"].as_u64(), Some(4), "{report}");
    assert!(report["pointed"].as_u64().unwrap() >= 4, "{report}");
    for key in ["hit_rate", "centre_baseline"] {
        let v = report[key].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&v), "{report}");
    }
    assert!(report["per_kind"]["phrase"].is_number(), "{report}");
    assert!(report["per_kind"]["word:colour"].is_number(), "{report}");
}
