//! `edgevlm join`: captioning and VQA fine-tuned side by side from one pretrained
//! model, then joined, give the model that VQA fine-tuned from the caption model
//! gives; folders that do not share a pretrained model are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgevlm::data::synth::{self, SynthOptions};
use edgevlm::model::params::max_difference;
use edgevlm::model::saved::SavedModel;

fn edgevlm(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgevlm"));
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    cmd.output().unwrap()
}

fn ok(run: Output) {
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

fn scenes(dir: &Path) -> PathBuf {
    let out = dir.join("scenes");
    synth::write(
        &out,
        &SynthOptions {
            count: 32,
            seed: 4,
            size: 32,
            questions_per_kind: 4,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    out
}

const COMMON: [&str; 7] = ["--quiet", "--batch-size", "8", "--max-steps", "6", "--seed", "2"];

fn pretrain(data: &Path, out: &Path, seed: &str) {
    let mut args = vec!["pretrain", "--tiny", "--quiet", "--batch-size", "8"];
    args.extend(["--max-steps", "2", "--seed", seed]);
    ok(edgevlm(&args, &[("--data", data), ("--out", out)]));
}

fn finetune(task: &str, from: &Path, data: &Path, out: &Path) {
    let mut args = vec!["finetune", task];
    if task == "vqa" {
        args.extend(["--vqa-head", "spatial", "--freeze", "vision,decoder"]);
    }
    args.extend(COMMON);
    ok(edgevlm(
        &args,
        &[("--from", from), ("--data", data), ("--out", out)],
    ));
}

#[test]
fn side_by_side_fine_tunings_join_into_the_sequential_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = scenes(dir);
    let pre = dir.join("pre");
    pretrain(&data, &pre, "3");
    let (caption, vqa, sequential) = (dir.join("caption"), dir.join("vqa"), dir.join("seq"));
    finetune("caption", &pre, &data, &caption);
    finetune("vqa", &pre, &data, &vqa);
    finetune("vqa", &caption, &data, &sequential);

    let joined = dir.join("joined");
    let parts = ["--parts", "vision,decoder"];
    ok(edgevlm(
        &[&["join"][..], &parts].concat(),
        &[("--model", &vqa), ("--from", &caption), ("--out", &joined)],
    ));

    let device = burn::tensor::Device::flex();
    let load = |d: &Path| SavedModel::load(d, &device).unwrap();
    let (joined_model, sequential_model, vqa_model) = (load(&joined), load(&sequential), load(&vqa));
    let caption_model = load(&caption);
    assert_eq!(joined_model.meta.answers, sequential_model.meta.answers);
    let diff = max_difference(&joined_model.model, &sequential_model.model).unwrap();
    assert!(diff <= 1e-6, "joined and sequential models differ by {diff}");
    // Not by accident: the caption stage moved the parts the join took.
    let moved = max_difference(&vqa_model.model.vision, &caption_model.model.vision).unwrap();
    assert!(moved > 1e-4, "captioning left the vision encoder as pretrained");
    assert_eq!(
        max_difference(&joined_model.model.decoder, &caption_model.model.decoder).unwrap(),
        0.0
    );

    // Folders from another pretraining (another tokenizer and weights) are refused
    // with a message naming the folder and what differs; nothing is written.
    let stranger = dir.join("stranger");
    let other_data = dir.join("other");
    synth::write(
        &other_data,
        &SynthOptions {
            count: 16,
            seed: 9,
            size: 32,
            questions_per_kind: 2,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    pretrain(&other_data, &stranger, "8");
    let refused = dir.join("refused");
    let run = edgevlm(
        &[&["join"][..], &parts].concat(),
        &[("--model", &vqa), ("--from", &stranger), ("--out", &refused)],
    );
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("stranger") && stderr.contains("differs"),
        "{stderr}"
    );
    assert!(!refused.exists());

    let run = edgevlm(
        &["join", "--parts", "visoin"],
        &[("--model", &vqa), ("--from", &caption), ("--out", &refused)],
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown model part `visoin`"));
}
