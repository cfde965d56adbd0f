//! Statements and dialogs through the CLI. Statements: `finetune reasoning` on the
//! synthetic scenes' statements, `eval reasoning`, `verify` on the host and
//! `edgevlm-device verify` on the exported bundle giving the same verdicts; data
//! that is not a statement set and models that do not judge are refused by name.
//! Dialogs: `finetune dialog`, `eval dialog` with and without the history, and
//! `chat` on host and device answering a piped conversation alike.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edgevlm::data::synth::{self, SynthOptions};
use edgevlm_tests::{binary, output_with_paths as run, succeeded as ok};
use serde_json::Value;

fn scenes(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let out = dir.join(format!("scenes-{seed}"));
    synth::write(
        &out,
        &SynthOptions {
            count: n,
            seed,
            size: 32,
            questions_per_kind: 2,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    out
}

#[test]
fn reasoning_trains_evaluates_and_verifies_alike_on_host_and_device() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (train, test) = (scenes(root, 48, 21), scenes(root, 8, 22));
    let common = ["--quiet", "--batch-size", "8", "--max-steps", "12", "--seed", "3"];
    let pre = root.join("pre");
    let mut args = vec!["pretrain", "--tiny", "--grid"];
    args.extend(common);
    ok(
        run("edgevlm", &args, &[("--data", &train), ("--out", &pre)]),
        "pretrain",
    );
    let model = root.join("reasoning");
    let mut args = vec!["finetune", "reasoning", "--vqa-head", "spatial"];
    args.extend(common);
    ok(
        run(
            "edgevlm",
            &args,
            &[("--from", &pre), ("--data", &train), ("--out", &model)],
        ),
        "finetune reasoning",
    );
    let answers: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("answers.json")).unwrap()).unwrap();
    assert_eq!(answers, serde_json::json!(["false", "true"]));

    let report = root.join("eval.json");
    ok(
        run(
            "edgevlm",
            &["eval", "reasoning"],
            &[("--model", &model), ("--data", &test), ("--report", &report)],
        ),
        "eval reasoning",
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["true_share"].as_f64(), Some(50.0), "{report}");
    assert!(report["statements"].as_u64().unwrap() >= 8 * 11, "{report}");
    for kind in ["attribute", "relational", "quantified"] {
        assert!(report["per_type"][kind].is_number(), "{report}");
    }
    for family in ["every-left", "more", "closest", "exactly"] {
        assert!(report["per_family"][family].is_number(), "{report}");
    }

    // The ITM head as the baseline verifier: same report, on the pretrained model.
    let itm = root.join("itm.json");
    ok(
        run(
            "edgevlm",
            &["eval", "reasoning", "--itm"],
            &[("--model", &pre), ("--data", &test), ("--report", &itm)],
        ),
        "eval reasoning --itm",
    );
    let itm: Value = serde_json::from_str(&std::fs::read_to_string(&itm).unwrap()).unwrap();
    assert_eq!(itm["statements"], report["statements"], "{itm}");
    assert!(itm["accuracy"].as_f64().unwrap() > 0.0, "{itm}");

    // Host and device: the same verdict on each of the first statements.
    let bundle = root.join("r.bundle");
    ok(
        run("edgevlm", &["export"], &[("--model", &model), ("--out", &bundle)]),
        "export",
    );
    let lines = std::fs::read_to_string(test.join("statements.jsonl")).unwrap();
    for line in lines.lines().take(6) {
        let s: Value = serde_json::from_str(line).unwrap();
        let image = test.join(s["image"].as_str().unwrap());
        let statement = s["statement"].as_str().unwrap();
        let image = image.to_str().unwrap();
        let host = ok(
            run("edgevlm", &["verify", image, statement], &[("--model", &model)]),
            "verify",
        );
        let device = ok(
            run(
                "edgevlm-device",
                &["verify", image, statement],
                &[("--bundle", &bundle)],
            ),
            "device verify",
        );
        let verdict = |out: &str| out.split_whitespace().next().unwrap_or_default().to_string();
        assert!(["true", "false"].contains(&verdict(&host).as_str()), "{host}");
        assert_eq!(
            verdict(&host),
            verdict(&device),
            "{statement}: {host} vs {device}"
        );
    }

    // Refusals: a statement marked neither true nor false, a model without verdicts.
    let bad = root.join("bad.jsonl");
    std::fs::write(
        &bad,
        r#"{"image": "scenes-22/images/000000.png", "statement": "there is a red circle", "answer": "maybe"}"#,
    )
    .unwrap();
    let out = run(
        "edgevlm",
        &["eval", "reasoning"],
        &[("--model", &model), ("--data", &bad)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.jsonl") && err.contains("\"maybe\""),
        "{err}"
    );
    let image = test.join("images/000000.png");
    let out = run(
        "edgevlm",
        &["verify", image.to_str().unwrap(), "there is a red circle"],
        &[("--model", &pre)],
    );
    assert!(!out.status.success());
}

fn chat(bin: &str, image: &Path, model: (&str, &Path), questions: &str) -> String {
    let mut child = Command::new(binary(bin))
        .arg("chat")
        .arg(image)
        .arg(model.0)
        .arg(model.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(questions.as_bytes())
        .unwrap();
    ok(child.wait_with_output().unwrap(), bin)
}

#[test]
fn dialogs_train_evaluate_with_and_without_history_and_chat_alike_on_host_and_device() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (train, test) = (scenes(root, 40, 31), scenes(root, 6, 32));
    let common = ["--quiet", "--batch-size", "8", "--max-steps", "12", "--seed", "3"];
    let pre = root.join("pre");
    let mut args = vec!["pretrain", "--tiny", "--grid"];
    args.extend(common);
    ok(
        run("edgevlm", &args, &[("--data", &train), ("--out", &pre)]),
        "pretrain",
    );
    let model = root.join("dialog");
    let mut args = vec!["finetune", "dialog", "--vqa-head", "spatial"];
    args.extend(common);
    ok(
        run(
            "edgevlm",
            &args,
            &[("--from", &pre), ("--data", &train), ("--out", &model)],
        ),
        "finetune dialog",
    );
    let report = root.join("eval.json");
    ok(
        run(
            "edgevlm",
            &["eval", "dialog"],
            &[("--model", &model), ("--data", &test), ("--report", &report)],
        ),
        "eval dialog",
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["rounds"].as_u64(), Some(60), "{report}");
    let needing = report["history_rounds"].as_u64().unwrap();
    assert!((15..=50).contains(&needing), "{report}");
    let answers: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(model.join("answers.json")).unwrap()).unwrap();
    assert_eq!(report["candidates"].as_u64(), Some(answers.len() as u64));
    for side in ["with_history", "history_blanked"] {
        let s = &report[side];
        assert_eq!(s["per_round"].as_object().unwrap().len(), 10, "{report}");
        let (mrr, r1) = (s["mrr"].as_f64().unwrap(), s["recall_at"][0].as_f64().unwrap());
        assert!(
            mrr > 0.0 && mrr <= 1.0 && (r1 - s["accuracy"].as_f64().unwrap()).abs() < 1e-9,
            "{s}"
        );
    }

    let bundle = root.join("d.bundle");
    ok(
        run("edgevlm", &["export"], &[("--model", &model), ("--out", &bundle)]),
        "export",
    );
    let image = test.join("images/000000.png");
    let questions = "what colour is the leftmost object?\nwhat shape is it?\n\nis it small or large?\n\
                     what colour is the object closest to it?\nhow many circles are there?\n";
    let host = chat("edgevlm", &image, ("--model", &model), questions);
    let device = chat("edgevlm-device", &image, ("--bundle", &bundle), questions);
    assert_eq!(host.lines().count(), 5, "{host}");
    assert_eq!(host, device);
}
