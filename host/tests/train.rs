//! Training runs through the CLI: kill -9 and resume reaches the uninterrupted
//! weights; a diverging run stops with a clear message and keeps its checkpoint;
//! pretraining lowers the held-out objective losses.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgevlm::data::synth::{self, SynthOptions};
use edgevlm::model::params::max_difference;
use edgevlm::model::saved::SavedModel;

fn scenes(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let out = dir.join(format!("scenes-{seed}"));
    synth::write(
        &out,
        &SynthOptions {
            count: n,
            seed,
            size: 32,
            questions_per_kind: 4,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    out
}

fn pretrain(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgevlm"));
    cmd.args([
        "pretrain",
        "--tiny",
        "--quiet",
        "--batch-size",
        "8",
        "--seed",
        "3",
        "--data",
    ])
    .arg(data)
    .arg("--out")
    .arg(out)
    .args(extra);
    cmd
}

fn checkpoint_step(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("checkpoint/state.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
}

#[test]
fn kill_9_then_resume_reaches_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = scenes(tmp.path(), 64, 1);
    let args = ["--max-steps", "40", "--checkpoint-every", "4", "--lr", "3e-3"];

    let straight = tmp.path().join("straight");
    assert!(pretrain(&data, &straight, &args).status().unwrap().success());

    let interrupted = tmp.path().join("interrupted");
    let mut child = pretrain(&data, &interrupted, &args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while checkpoint_step(&interrupted).is_none_or(|s| s < 8) {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed mid-way");
    let killed_at = checkpoint_step(&interrupted).unwrap();
    assert!(killed_at < 40, "killed at {killed_at}");
    assert!(!interrupted.join("model.bpk").exists());

    let mut resumed = pretrain(&data, &interrupted, &args);
    resumed.arg("--resume");
    assert!(resumed.status().unwrap().success());

    let device = burn::tensor::Device::flex();
    let a = SavedModel::load(&straight, &device).unwrap();
    let b = SavedModel::load(&interrupted, &device).unwrap();
    let diff = max_difference(&a.model, &b.model).unwrap();
    assert!(diff <= 1e-6, "resumed weights differ by {diff}");
    // The metrics log holds each step once.
    let log = std::fs::read_to_string(interrupted.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=40).collect::<Vec<_>>());
}

#[test]
fn diverging_loss_stops_with_a_clear_message_and_keeps_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = scenes(tmp.path(), 32, 2);
    let run = tmp.path().join("run");
    let out = pretrain(
        &data,
        &run,
        &[
            "--max-steps",
            "30",
            "--checkpoint-every",
            "1",
            "--lr",
            "1e12",
            "--grad-clip",
            "0",
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loss became") && stderr.contains("last good checkpoint"),
        "{stderr}"
    );
    let kept = checkpoint_step(&run).expect("a checkpoint survives");
    assert!(kept >= 1);
    // The kept checkpoint loads.
    let config = SavedModel::load_meta(&run).unwrap().config;
    let model = config.init(&burn::tensor::Device::flex());
    edgevlm::train::checkpoint::load_model(&run.join("checkpoint/model.bpk"), model).unwrap();
}

#[test]
fn pretraining_lowers_held_out_losses_and_models_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let train = scenes(tmp.path(), 96, 4);
    let heldout = scenes(tmp.path(), 24, 5);
    let run = tmp.path().join("pre");
    let mut cmd = pretrain(
        &train,
        &run,
        &[
            "--epochs",
            "4",
            "--checkpoint-every",
            "20",
            "--lr",
            "2e-3",
            "--heldout",
        ],
    );
    cmd.arg(&heldout);
    assert!(cmd.status().unwrap().success());
    let log = std::fs::read_to_string(run.join("heldout.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (first, last) = (&rows[0], rows.last().unwrap());
    assert_eq!(first["step"], 0);
    for part in ["loss", "mlm_loss", "mim_loss"] {
        let (a, b) = (first[part].as_f64().unwrap(), last[part].as_f64().unwrap());
        assert!(b < a, "{part}: {a} -> {b}");
    }
    // Half the ITM negatives are random by default, so the log also tests against hard ones.
    for row in [first, last] {
        let hard = row["itm_hard_loss"].as_f64().expect("itm_hard_loss is logged");
        assert!(hard.is_finite() && hard > 0.0, "{row}");
    }
    assert!(run.join("loss.png").is_file());

    // Fine-tune briefly for VQA and captions, then the CLI answers and captions an image.
    let bin = env!("CARGO_BIN_EXE_edgevlm");
    for task in ["vqa", "caption"] {
        let status = Command::new(bin)
            .args([
                "finetune",
                task,
                "--quiet",
                "--batch-size",
                "8",
                "--max-steps",
                "6",
                "--from",
            ])
            .arg(&run)
            .arg("--data")
            .arg(&train)
            .arg("--out")
            .arg(tmp.path().join(task))
            .status()
            .unwrap();
        assert!(status.success(), "finetune {task}");
    }
    let image = train.join("images/000000.png");
    let ask = Command::new(bin)
        .arg("ask")
        .arg(&image)
        .arg("what shape is the red object?")
        .arg("--model")
        .arg(tmp.path().join("vqa"))
        .output()
        .unwrap();
    assert!(ask.status.success(), "{}", String::from_utf8_lossy(&ask.stderr));
    let answers: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("vqa/answers.json")).unwrap()).unwrap();
    let said = String::from_utf8_lossy(&ask.stdout);
    assert!(
        answers.iter().any(|a| said.starts_with(&format!("{a} ("))),
        "{said}"
    );
    let caption = Command::new(bin)
        .arg("caption")
        .arg(&image)
        .arg("--model")
        .arg(tmp.path().join("caption"))
        .output()
        .unwrap();
    assert!(
        caption.status.success(),
        "{}",
        String::from_utf8_lossy(&caption.stderr)
    );

    // A missing model folder is a named error.
    let missing = Command::new(bin)
        .arg("caption")
        .arg(&image)
        .arg("--model")
        .arg(tmp.path().join("nope"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
}

/// `--slow text`: the text encoder moves by the ratio's share of the learning rate
/// (not at all at 0) while the parts beside it learn at the full rate.
#[test]
fn slow_parts_learn_at_their_share_of_the_learning_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = scenes(tmp.path(), 32, 6);
    let pre = tmp.path().join("pre");
    assert!(pretrain(&data, &pre, &["--max-steps", "2"])
        .status()
        .unwrap()
        .success());
    let bin = env!("CARGO_BIN_EXE_edgevlm");
    let finetune = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let run = Command::new(bin)
            .args([
                "finetune",
                "vqa",
                "--quiet",
                "--batch-size",
                "8",
                "--max-steps",
                "4",
            ])
            .args(["--seed", "1", "--from"])
            .arg(&pre)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        (out, run)
    };
    let device = burn::tensor::Device::flex();
    let pretrained = SavedModel::load(&pre, &device).unwrap().model;
    let moved = |dir: &Path| {
        let model = SavedModel::load(dir, &device).unwrap().model;
        (
            max_difference(&model.text, &pretrained.text).unwrap(),
            max_difference(&model.fusion, &pretrained.fusion).unwrap(),
        )
    };

    let (full, run) = finetune("full", &[]);
    assert!(run.status.success());
    let (still, run) = finetune("still", &["--slow", "text", "--slow-lr-ratio", "0"]);
    assert!(run.status.success());
    let (tenth, run) = finetune("tenth", &["--slow", "text", "--slow-lr-ratio", "0.1"]);
    assert!(run.status.success());
    let (full_text, full_fusion) = moved(&full);
    let (still_text, still_fusion) = moved(&still);
    let (tenth_text, _) = moved(&tenth);
    assert_eq!(still_text, 0.0, "ratio 0 leaves the text encoder as pretrained");
    assert!(
        still_fusion > 0.0 && full_fusion > 0.0,
        "fusion learns at the full rate"
    );
    assert!(full_text > 0.0);
    // AdamW steps scale with the learning rate: a tenth of it moves the weights by
    // about a tenth (bounded loosely: the gradients differ once the weights do).
    assert!(
        tenth_text > 0.0 && tenth_text < 0.3 * full_text,
        "text moved {tenth_text} at a tenth of the rate, {full_text} at the full rate"
    );

    let (_, run) = finetune("unknown", &["--slow", "txt"]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("unknown model part `txt`"), "{stderr}");
}
