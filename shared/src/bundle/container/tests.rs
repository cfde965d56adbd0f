use super::*;
use crate::bundle::{DecoderSpec, WeightStorage};
use crate::config::PreprocessConfig;

/// A bundle of `files` under a small valid manifest (other test modules use it too).
pub(crate) fn bundle_of(files: Vec<(String, FileKind, Vec<u8>)>) -> Bundle {
    let manifest = Manifest {
        format_version: 0,
        name: "t".into(),
        model_version: 3,
        created: 0,
        weights: WeightStorage::F32,
        preprocess: PreprocessConfig::imagenet(64),
        max_text_len: 32,
        answers: vec!["yes".into(), "no".into()],
        decoder: DecoderSpec {
            layers: 1,
            heads: 2,
            d_head: 4,
            max_len: 8,
            vocab: 10,
        },
        files: vec![],
        selftest: None,
        decoding: None,
    };
    Bundle::new(manifest, files)
}

fn sample() -> Bundle {
    bundle_of(vec![
        ("a.onnx".into(), FileKind::Graph, vec![1, 2, 3]),
        ("tokenizer.json".into(), FileKind::Tokenizer, b"{}".to_vec()),
    ])
}

#[test]
fn round_trips_and_lists_each_file() {
    let b = sample();
    let back = Bundle::from_bytes(&b.to_bytes(), "x").unwrap();
    assert_eq!(back.manifest, b.manifest);
    assert_eq!(back.file("a.onnx").unwrap(), &[1, 2, 3]);
    assert_eq!(back.manifest.files[1].offset, 3);
    assert!(matches!(back.file("nope"), Err(BundleError::MissingFile { .. })));
}

#[test]
fn every_truncation_and_any_flipped_byte_is_refused() {
    let bytes = sample().to_bytes();
    for cut in 0..bytes.len() {
        let err = Bundle::from_bytes(&bytes[..cut], "b").unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::NotABundle { .. } | BundleError::Truncated { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(
            Bundle::from_bytes(&bad, "b").is_err(),
            "flip at byte {at} accepted"
        );
    }
    let mut payload = bytes.clone();
    let last = payload.len() - 1;
    payload[last] ^= 1;
    let err = Bundle::from_bytes(&payload, "b.bundle").unwrap_err();
    assert_eq!(
        err.to_string(),
        "b.bundle: file `tokenizer.json` fails its sha256 check (corrupt or tampered)"
    );
    let mut version = bytes;
    version[8] = 9;
    assert!(matches!(
        Bundle::from_bytes(&version, "b"),
        Err(BundleError::Version { found: 9, .. })
    ));
}

/// A manifest re-signed after editing, as an attacker or a buggy writer could.
fn with_manifest(bundle: &Bundle, edit: impl Fn(&mut Manifest), trailing: &[u8]) -> Vec<u8> {
    let mut manifest = bundle.manifest.clone();
    edit(&mut manifest);
    let mut out = bundle.to_bytes();
    let old_len = u32::from_le_bytes(out[12..16].try_into().unwrap()) as usize;
    let body = postcard::to_stdvec(&manifest).unwrap();
    out.splice(HEADER..HEADER + old_len, body.iter().copied());
    out[12..16].copy_from_slice(&(body.len() as u32).to_le_bytes());
    out[16..HEADER].copy_from_slice(&sha256(&body));
    out.extend_from_slice(trailing);
    out
}

/// Found by the `bundle_manifest` fuzzer: a file table with gaps, overlaps or
/// repeated names read back, but could not be written back the same way.
#[test]
fn only_the_layout_the_writer_produces_is_read() {
    let b = sample();
    let reason = |bytes: Vec<u8>| Bundle::from_bytes(&bytes, "b").unwrap_err().to_string();
    let gap = with_manifest(&b, |m| m.files[1].offset = 4, b"x");
    assert!(reason(gap).contains("file `tokenizer.json` at offset 4, expected 3"));
    let twice = with_manifest(
        &b,
        |m| {
            m.files[1].name = "a.onnx".into();
            m.files[1].len = 3;
            m.files[1].sha256 = sha256(&[1, 2, 3]);
        },
        &[1, 2, 3],
    );
    assert!(reason(twice).contains("listed twice"));
    let stray = with_manifest(&b, |_| {}, b"??");
    assert!(reason(stray).contains("2 stray bytes after the last file"));
}

/// Zero sizes divided by at run time (or absurd ones allocated from) are
/// refused when the bundle is read, naming the field.
#[test]
fn manifests_with_impossible_sizes_are_refused() {
    let b = sample();
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("`decoder.vocab` is 0", Box::new(|m| m.decoder.vocab = 0)),
        ("`decoder.layers` is 0", Box::new(|m| m.decoder.layers = 0)),
        ("`decoder.heads` is 0", Box::new(|m| m.decoder.heads = 0)),
        ("`decoder.d_head` is 0", Box::new(|m| m.decoder.d_head = 0)),
        ("`decoder.max_len` is 0", Box::new(|m| m.decoder.max_len = 0)),
        ("`max_text_len` is 0", Box::new(|m| m.max_text_len = 0)),
        (
            "`preprocess.image_size` is 0",
            Box::new(|m| m.preprocess.image_size = 0),
        ),
        (
            "`preprocess.image_size` is 100000",
            Box::new(|m| m.preprocess.image_size = 100_000),
        ),
        (
            "`selftest.image` names `missing.png`",
            Box::new(|m| {
                m.selftest = Some(crate::bundle::SelfTest {
                    image: "missing.png".into(),
                    caption: String::new(),
                    vqa: None,
                    embedding_head: vec![],
                    tolerance: 0.1,
                })
            }),
        ),
    ];
    for (expected, edit) in cases {
        let bytes = with_manifest(&b, edit, &[]);
        let err = Bundle::from_bytes(&bytes, "b").unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

/// A signed-looking bundle whose file names climb out of the folder a reader
/// unpacks into is refused before any byte of it is used.
#[test]
fn unsafe_file_names_are_refused_at_parse_time() {
    let b = sample();
    for name in [
        "../evil.onnx",
        "/etc/cron.d/x",
        "a\\..\\b",
        "firmware/../../x",
        "deep/er/x",
        "",
    ] {
        let bytes = with_manifest(&b, |m| m.files[0].name = name.into(), &[]);
        let err = Bundle::from_bytes(&bytes, "evil.bundle").unwrap_err().to_string();
        assert!(
            err.starts_with("evil.bundle: malformed manifest: file name") && err.contains("refused"),
            "{name:?}: {err}"
        );
    }
}

/// Every way of reading a file gives the same bundle; keeping some files still
/// checks the others, and a listed-twice name is found among files not kept.
#[test]
fn file_chunked_and_partial_reads_agree_and_still_check_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.bundle");
    let b = sample();
    b.write(&path).unwrap();
    let whole = Bundle::read(&path).unwrap();
    assert_eq!(
        whole,
        Bundle::from_bytes(&b.to_bytes(), &path.display().to_string()).unwrap()
    );
    assert_eq!(
        crate::bundle::Chunks::read(&path)
            .unwrap()
            .into_bundle(None)
            .unwrap(),
        whole
    );
    for only in [
        Bundle::read_only(&path, &["a.onnx"]).unwrap(),
        crate::bundle::Chunks::read(&path)
            .unwrap()
            .into_bundle(Some(&["a.onnx"]))
            .unwrap(),
    ] {
        assert_eq!(only.file("a.onnx").unwrap(), &[1, 2, 3]);
        assert!(!only.has_file("tokenizer.json"));
        assert_eq!(only.manifest, whole.manifest);
    }
    let mut bytes = b.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = Bundle::read_only(&path, &["a.onnx"]).unwrap_err().to_string();
    assert!(err.contains("`tokenizer.json` fails its sha256 check"), "{err}");
    let err = crate::bundle::Chunks::read(&path)
        .unwrap()
        .into_bundle(Some(&["a.onnx"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`tokenizer.json` fails its sha256 check"), "{err}");
    let twice = with_manifest(&b, |m| m.files[1].name = "a.onnx".into(), &[]);
    std::fs::write(&path, twice).unwrap();
    let err = Bundle::read_only(&path, &["tokenizer.json"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
}
