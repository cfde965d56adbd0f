//! A floor under quality: a small synthetic model trained for a fixed, seeded
//! budget must answer and caption held-out scenes far better than any prior.
//! (Measured here: VQA 55.1 % against 9.3 % for the most common answer and 34 %
//! for each question family's most common answer; colour 81.4 % against 1 in 6;
//! BLEU-4 about 38.) A change that breaks learning, the data or decoding fails
//! this test, where the behaviour tests elsewhere would still pass.

use std::path::Path;

use edgevlm_tests::run_ok;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn edgevlm(args: &[&str]) -> String {
    run_ok("edgevlm", args)
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_small_model_trained_for_a_fixed_budget_clears_quality_floors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name);
    let (train, test) = (dir("train"), dir("test"));
    edgevlm(&[
        "data",
        "synth",
        "--out",
        s(&train),
        "--n",
        "1500",
        "--size",
        "32",
        "--seed",
        "41",
    ]);
    edgevlm(&[
        "data",
        "synth",
        "--out",
        s(&test),
        "--n",
        "200",
        "--size",
        "32",
        "--seed",
        "42",
    ]);
    let common = ["--quiet", "--batch-size", "32", "--seed", "3"];
    let run = |args: &[&str]| edgevlm(&[args, &common[..]].concat());
    run(&[
        "pretrain",
        "--tiny",
        "--grid",
        "--image-size",
        "32",
        "--patch-size",
        "8",
        "--max-steps",
        "100",
        "--data",
        s(&train),
        "--out",
        s(&dir("pre")),
    ]);
    run(&[
        "finetune",
        "vqa",
        "--vqa-head",
        "spatial",
        // At this budget the full focus weight has taught the head where to look
        // and the default 0.3 has not yet (docs/results-reasoning.md).
        "--focus-weight",
        "1",
        "--max-steps",
        "1000",
        "--lr",
        "2e-3",
        "--from",
        s(&dir("pre")),
        "--data",
        s(&train),
        "--out",
        s(&dir("vqa")),
    ]);
    run(&[
        "finetune",
        "caption",
        "--max-steps",
        "400",
        "--lr",
        "2e-3",
        "--from",
        s(&dir("vqa")),
        "--data",
        s(&train),
        "--out",
        s(&dir("model")),
    ]);
    let model = dir("model");
    edgevlm(&["eval", "vqa", "--model", s(&model), "--data", s(&test)]);
    edgevlm(&["eval", "caption", "--model", s(&model), "--data", s(&test)]);

    let vqa = report(&model.join("eval-vqa.json"));
    let accuracy = vqa["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 40.0, "VQA accuracy {accuracy:.1} % (floor 40): {vqa}");
    let colour = vqa["per_family"]["colour"].as_f64().unwrap();
    assert!(
        colour >= 35.0,
        "colour questions {colour:.1} % (floor 35, chance 1 in 6)"
    );
    let caption = report(&model.join("eval-caption.json"));
    let bleu4 = caption["bleu"][3].as_f64().unwrap();
    assert!(bleu4 >= 30.0, "BLEU-4 {bleu4:.1} (floor 30)");
}
