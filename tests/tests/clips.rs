//! Clips through the CLI: `data synth --clips`, `finetune clip-caption`, `eval
//! clip-caption` on the folder and on the exported bundle (the same captions),
//! `caption-clip` on host and board alike (forwards and reversed), and the board's
//! run loop with `clip_frames`, whose event carries the clip's caption beside the
//! frame's. Models and bundles that caption no clips are refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgevlm::data::synth::{self, SynthOptions};
use edgevlm_tests::{binary, output_with_paths as run, succeeded as ok};
use serde_json::Value;

fn data(dir: &Path, clips: usize, seed: u64) -> PathBuf {
    let out = dir.join(format!("scenes-{seed}"));
    synth::write(
        &out,
        &SynthOptions {
            count: 24,
            seed,
            size: 32,
            questions_per_kind: 1,
            clips,
            clip_frames: 4,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    out
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn clips_train_evaluate_and_caption_alike_on_host_and_board() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (train, test) = (data(root, 24, 41), data(root, 6, 42));
    let common = ["--quiet", "--batch-size", "4", "--max-steps", "12", "--seed", "3"];
    let pre = root.join("pre");
    let mut args = vec!["pretrain", "--tiny"];
    args.extend(common);
    ok(
        run("edgevlm", &args, &[("--data", &train), ("--out", &pre)]),
        "pretrain",
    );
    let tokenizer = std::fs::read_to_string(pre.join("tokenizer.json")).unwrap();
    assert!(
        tokenizer.contains("\"disappears\""),
        "the clips' words are in the vocabulary"
    );

    // A model that captions no clips is refused by name.
    let refused = run(
        "edgevlm",
        &["eval", "clip-caption"],
        &[("--model", &pre), ("--data", &test)],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("finetune clip-caption"));

    let model = root.join("clips");
    let mut args = vec!["finetune", "clip-caption", "--freeze", "vision"];
    args.extend(common);
    ok(
        run(
            "edgevlm",
            &args,
            &[("--from", &pre), ("--data", &train), ("--out", &model)],
        ),
        "finetune clip-caption",
    );
    assert_eq!(json(&model.join("config.json"))["temporal"]["frames"], 4);

    let report = root.join("eval.json");
    ok(
        run(
            "edgevlm",
            &["eval", "clip-caption"],
            &[("--model", &model), ("--data", &test), ("--report", &report)],
        ),
        "eval clip-caption",
    );
    let host = json(&report);
    assert_eq!(host["clips"], 6);
    assert!(
        host["bleu"].as_array().unwrap().len() == 4 && host["cider_d"].is_number(),
        "{host}"
    );
    assert!(host["event_told"]["all"].is_number(), "{host}");

    let bundle = root.join("clips.bundle");
    ok(
        run("edgevlm", &["export"], &[("--model", &model), ("--out", &bundle)]),
        "export",
    );
    let board_report = root.join("eval-bundle.json");
    ok(
        run(
            "edgevlm",
            &["eval", "clip-caption"],
            &[
                ("--model", &bundle),
                ("--data", &test),
                ("--report", &board_report),
            ],
        ),
        "eval clip-caption on the bundle",
    );
    let board = json(&board_report);
    assert_eq!(
        board["examples"], host["examples"],
        "the bundle captions every clip as the model does"
    );
    assert_eq!(board["bleu"], host["bleu"]);

    // One clip, forwards and backwards, on host and board.
    let clip = test.join("clips/000001");
    for reversed in [false, true] {
        let mut args = vec!["caption-clip", clip.to_str().unwrap()];
        if reversed {
            args.push("--reversed");
        }
        let on_host = ok(run("edgevlm", &args, &[("--model", &model)]), "caption-clip");
        let on_board = ok(
            run("edgevlm-device", &args, &[("--bundle", &bundle)]),
            "device caption-clip",
        );
        assert_eq!(on_host, on_board, "reversed: {reversed}");
    }

    // The run loop keeps the last 4 frames and captions them when the trigger fires.
    let inbox = root.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    for f in 0..4 {
        std::fs::copy(
            clip.join(format!("{f:02}.png")),
            inbox.join(format!("{f:02}.png")),
        )
        .unwrap();
    }
    let config = root.join("device.toml");
    std::fs::write(
        &config,
        format!(
            "bundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 1\nclip_frames = 4\n\
             events.file = \"events.jsonl\"\n[camera]\nkind = \"directory\"\npath = {inbox:?}\nexisting = true\n\
             [trigger]\nkind = \"frame\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(binary("edgevlm-device"))
        .args(["run", "--max-events", "4", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = std::fs::read_to_string(root.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 4);
    assert!(
        events[0].get("clip_caption").is_none(),
        "one frame is no clip: {}",
        events[0]
    );
    let whole = ok(
        run(
            "edgevlm",
            &["caption-clip", clip.to_str().unwrap()],
            &[("--model", &model)],
        ),
        "caption-clip",
    );
    assert_eq!(events[3]["clip_caption"], whole.trim(), "{}", events[3]);
    assert!(events[3]["caption"].is_string() && events[3]["latency"]["clip_ms"].is_number());

    // A loop asked for clips with a bundle that has none refuses to start, by name.
    let plain = root.join("plain.bundle");
    ok(
        run("edgevlm", &["export"], &[("--model", &pre), ("--out", &plain)]),
        "export plain",
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(bundle.to_str().unwrap(), plain.to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let out = Command::new(binary("edgevlm-device"))
        .args(["run", "--max-events", "1", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("clip_frames"));
}
