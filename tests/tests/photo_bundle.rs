//! The real-photo model on the board, on real photos: a small model trained by
//! `edgevlm train --recipe flickr8k` on ten CC0 scikit-image photos with captions
//! written for them (`tests/fixtures/photos`), exported, and run by the device:
//! its text trigger fires for the photos a phrase describes and for no other, and
//! the events carry the same captions the host gives. Fine-tuned for VQA on its
//! locked towers, it answers from the photo (a question-only baseline cannot), and
//! the board answers as the host does.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgevlm_tests::{binary, fixture, run_ok};

fn pretrained() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained");
    assert!(
        dir.join("samples/chelsea.png").is_file() && dir.join("minilm-l6/model.safetensors").is_file(),
        "{} is missing photos or towers: run models/fetch-pretrained.sh",
        dir.display()
    );
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The fixture captions with the sample photos, in the Flickr8k layout.
fn photo_folder(dir: &Path) {
    let photos = fixture("photos");
    std::fs::create_dir_all(dir.join("Images")).unwrap();
    for list in [
        "captions.txt",
        "Flickr_8k.trainImages.txt",
        "Flickr_8k.devImages.txt",
    ] {
        let from = photos.join(list);
        std::fs::copy(&from, dir.join(list)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    let train = std::fs::read_to_string(photos.join("Flickr_8k.trainImages.txt")).unwrap();
    for name in train.lines() {
        std::fs::copy(
            pretrained().join("samples").join(name),
            dir.join("Images").join(name),
        )
        .unwrap();
    }
}

fn trained_bundle(root: &Path) -> (PathBuf, PathBuf) {
    let (data, model, cache) = (root.join("photos"), root.join("model"), root.join("cache"));
    photo_folder(&data);
    let towers = pretrained();
    run_ok(
        "edgevlm",
        &[
            "train",
            "--recipe",
            "flickr8k",
            "--data",
            s(&data),
            "--out",
            s(&model),
            "--cache",
            s(&cache),
            "--towers",
            s(&towers),
            "--align-epochs",
            "40",
            "--caption-epochs",
            "12",
            "--patience",
            "12",
            "--beam",
            "3",
        ],
    );
    let bundle = root.join("photo.bundle");
    run_ok(
        "edgevlm",
        &[
            "export",
            "--model",
            s(&model),
            "--out",
            s(&bundle),
            "--selftest-image",
            s(&data.join("Images/chelsea.png")),
        ],
    );
    (model, bundle)
}

/// Runs the device loop over `frames` (in name order) with a text trigger until
/// `events` events; returns the events.
fn text_trigger_events(
    root: &Path,
    bundle: &Path,
    frames: &[(&str, &str)],
    phrase: &str,
    events: usize,
) -> Vec<serde_json::Value> {
    let inbox = root.join(format!("inbox-{}", phrase.replace(' ', "-")));
    std::fs::create_dir_all(&inbox).unwrap();
    for (name, photo) in frames {
        std::fs::copy(pretrained().join("samples").join(photo), inbox.join(name)).unwrap();
    }
    let config = inbox.with_extension("toml");
    let log = inbox.with_extension("jsonl");
    std::fs::write(
        &config,
        format!(
            "device = \"ci\"\nbundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 1\nevents.file = {log:?}\n\
             [camera]\nkind = \"directory\"\npath = {inbox:?}\nexisting = true\n\
             [trigger]\nkind = \"text\"\nphrase = {phrase:?}\nmin_similarity = 0.5\n"
        ),
    )
    .unwrap();
    let out = Command::new(binary("edgevlm-device"))
        .args(["run", "--max-events", &events.to_string(), "--config", s(&config)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_text_trigger_fires_on_the_photos_a_phrase_describes_captions_and_answers_as_the_host_does() {
    let root = tempfile::tempdir().unwrap();
    let (model, bundle) = trained_bundle(root.path());
    let selftest = run_ok("edgevlm-device", &["selftest", "--bundle", s(&bundle)]);
    assert!(selftest.contains("self-test passed"), "{selftest}");

    // The cat twice, the second time last: two events mean that the eight photos
    // before it were judged and none fired.
    let frames = [
        ("00.png", "astronaut.png"),
        ("01.png", "coffee.png"),
        ("02.jpg", "rocket.jpg"),
        ("03.png", "chelsea.png"),
        ("04.png", "motorcycle_left.png"),
        ("05.png", "camera.png"),
        ("06.png", "coins.png"),
        ("07.jpg", "hubble_deep_field.jpg"),
        ("08.png", "brick.png"),
        ("09.png", "moon.png"),
        ("10.png", "chelsea.png"),
    ];
    let events = text_trigger_events(root.path(), &bundle, &frames, "a cat on a chair", 2);
    let sources: Vec<&str> = events.iter().map(|e| e["source"].as_str().unwrap()).collect();
    assert!(
        sources[0].ends_with("03.png") && sources[1].ends_with("10.png"),
        "{sources:?}"
    );
    for event in &events {
        assert!(event["trigger_score"].as_f64().unwrap() >= 0.5, "{event}");
    }
    // The event's caption is the host's caption of that photo.
    let photo = pretrained().join("samples/chelsea.png");
    let host = run_ok("edgevlm", &["caption", s(&photo), "--model", s(&model)]);
    assert_eq!(events[0]["caption"].as_str().unwrap(), host.trim());

    // Another phrase fires on its own photo only.
    let frames = [
        ("00.png", "motorcycle_left.png"),
        ("01.png", "astronaut.png"),
        ("02.png", "chelsea.png"),
        ("03.png", "coffee.png"),
        ("04.jpg", "rocket.jpg"),
        ("05.png", "camera.png"),
        ("06.png", "coins.png"),
        ("07.png", "moon.png"),
        ("08.png", "motorcycle_left.png"),
    ];
    let events = text_trigger_events(root.path(), &bundle, &frames, "a motorbike parked in a garage", 2);
    let sources: Vec<&str> = events.iter().map(|e| e["source"].as_str().unwrap()).collect();
    assert!(
        sources[0].ends_with("00.png") && sources[1].ends_with("08.png"),
        "{sources:?}"
    );

    answers_questions_about_the_photos(root.path(), &model);
}

/// One question, "what is this a photo of?", for every photo: only the photo can
/// tell the answers apart.
const SUBJECTS: [(&str, &str); 10] = [
    ("astronaut.png", "astronaut"),
    ("chelsea.png", "cat"),
    ("coffee.png", "coffee"),
    ("rocket.jpg", "rocket"),
    ("motorcycle_left.png", "motorcycle"),
    ("camera.png", "man"),
    ("coins.png", "coins"),
    ("hubble_deep_field.jpg", "galaxies"),
    ("brick.png", "wall"),
    ("moon.png", "moon"),
];

fn vqa_accuracy(model: &Path, questions: &Path, report: &Path) -> f64 {
    run_ok(
        "edgevlm",
        &[
            "eval",
            "vqa",
            "--model",
            s(model),
            "--data",
            s(questions),
            "--report",
            s(report),
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    report["accuracy"].as_f64().unwrap()
}

fn answers_questions_about_the_photos(root: &Path, captioner: &Path) {
    let questions = root.join("photos/questions.jsonl");
    let lines: Vec<String> = SUBJECTS
        .iter()
        .map(|(photo, answer)| {
            serde_json::json!({
                "image": format!("Images/{photo}"),
                "question": "what is this a photo of?",
                "answer": answer,
            })
            .to_string()
        })
        .collect();
    std::fs::write(&questions, lines.join("\n")).unwrap();
    let cache = root.join("cache");
    let finetune = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "finetune",
            "vqa",
            "--from",
            s(captioner),
            "--data",
            s(&questions),
            "--out",
            s(out),
            "--cache",
            s(&cache),
            "--max-steps",
            "60",
            "--batch-size",
            "10",
            "--lr",
            "0.001",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        run_ok("edgevlm", &args);
    };
    let (vqa, blind) = (root.join("vqa"), root.join("blind"));
    finetune(&vqa, &[]);
    finetune(&blind, &["--question-only"]);
    let seen = vqa_accuracy(&vqa, &questions, &root.join("vqa.json"));
    let guessed = vqa_accuracy(&blind, &questions, &root.join("blind.json"));
    assert!(seen >= 90.0, "with the photo: {seen} %");
    assert!(guessed <= 20.0, "from the question alone: {guessed} %");

    // The board gives the host's answer; a baseline that never sees the photo is
    // refused for the board.
    let bundle = root.join("vqa.bundle");
    let selftest = root.join("photos/Images/chelsea.png");
    run_ok(
        "edgevlm",
        &[
            "export",
            "--model",
            s(&vqa),
            "--out",
            s(&bundle),
            "--selftest-image",
            s(&selftest),
        ],
    );
    let mut host_answers = Vec::new();
    for (photo, _) in SUBJECTS.iter().step_by(3) {
        let image = pretrained().join("samples").join(photo);
        let question = "what is this a photo of?";
        let host = run_ok("edgevlm", &["ask", s(&image), question, "--model", s(&vqa)]);
        let board = run_ok(
            "edgevlm-device",
            &["ask", s(&image), question, "--bundle", s(&bundle)],
        );
        // The host adds its confidence: "answer (87.5%)".
        let host = host
            .trim()
            .rsplit_once(" (")
            .map_or(host.trim(), |(answer, _)| answer);
        assert_eq!(board.trim(), host, "{photo}");
        host_answers.push((*photo, host.to_string()));
    }
    questions_answered_on_every_capture(root, &bundle, &host_answers);
    let out = Command::new(binary("edgevlm"))
        .args([
            "export",
            "--model",
            s(&blind),
            "--out",
            s(&root.join("blind.bundle")),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("question-only"), "{err}");
}

/// device.toml `questions` with the photo VQA bundle: every capture of the loop
/// answers them, as the host answers each photo.
fn questions_answered_on_every_capture(root: &Path, bundle: &Path, host_answers: &[(&str, String)]) {
    let inbox = root.join("inbox-questions");
    std::fs::create_dir_all(&inbox).unwrap();
    for (i, (photo, _)) in host_answers.iter().enumerate() {
        std::fs::copy(
            pretrained().join("samples").join(photo),
            inbox.join(format!("{i:02}-{photo}")),
        )
        .unwrap();
    }
    let (config, log) = (root.join("questions.toml"), root.join("questions.jsonl"));
    std::fs::write(
        &config,
        format!(
            "device = \"ci\"\nbundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 1\n\
             questions = [\"what is this a photo of?\"]\nevents.file = {log:?}\n\
             [camera]\nkind = \"directory\"\npath = {inbox:?}\nexisting = true\n\
             [trigger]\nkind = \"frame\"\n"
        ),
    )
    .unwrap();
    let n = host_answers.len().to_string();
    run_ok(
        "edgevlm-device",
        &["run", "--max-events", &n, "--config", s(&config)],
    );
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), host_answers.len());
    for (event, (photo, host)) in events.iter().zip(host_answers) {
        assert!(event["source"].as_str().unwrap().ends_with(photo), "{event}");
        assert_eq!(
            event["answers"][0]["question"], "what is this a photo of?",
            "{event}"
        );
        assert_eq!(event["answers"][0]["answer"], host.as_str(), "{photo}: {event}");
    }
}
