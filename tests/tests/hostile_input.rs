//! Issue 22 ("the board under attack") through the binaries: crafted bundles,
//! second `keygen`s and the like, each refused without touching anything outside
//! what the command was asked to write. No training: bundles are built in memory.

use std::path::Path;
use std::process::Command;

use edgevlm_shared::bundle::{Bundle, DecoderSpec, FileKind, Manifest, WeightStorage, FIRMWARE_FILE};
use edgevlm_shared::PreprocessConfig;
use edgevlm_tests::binary;

fn manifest() -> Manifest {
    Manifest {
        format_version: 0,
        name: "hostile".into(),
        model_version: 1,
        created: 0,
        weights: WeightStorage::F32,
        preprocess: PreprocessConfig::imagenet(32),
        max_text_len: 16,
        answers: vec![],
        decoder: DecoderSpec {
            layers: 1,
            heads: 1,
            d_head: 4,
            max_len: 8,
            vocab: 10,
        },
        files: vec![],
        selftest: None,
        decoding: None,
    }
}

fn write_bundle(path: &Path, files: Vec<(String, FileKind, Vec<u8>)>) {
    std::fs::write(path, Bundle::new(manifest(), files).to_bytes()).unwrap();
}

fn unpack(bundle: &Path, out: &Path) -> std::process::Output {
    Command::new(binary("edgevlm-device"))
        .args(["unpack", bundle.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn unpack_never_writes_outside_out_and_unpacks_firmware_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for name in [
        "../escaped",
        "firmware/../../escaped",
        "/tmp/edgevlm-escaped",
        "..\\escaped",
    ] {
        let evil = tmp.path().join("evil.bundle");
        write_bundle(&evil, vec![(name.into(), FileKind::Graph, b"pwned".to_vec())]);
        let run = unpack(&evil, &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{name:?} unpacked");
        assert!(stderr.contains("refused"), "{name:?}: {stderr}");
        assert!(!tmp.path().join("escaped").exists(), "{name:?} escaped --out");
    }
    assert!(!Path::new("/tmp/edgevlm-escaped").exists());

    let good = tmp.path().join("fw.bundle");
    write_bundle(
        &good,
        vec![
            ("tokenizer.json".into(), FileKind::Tokenizer, b"{}".to_vec()),
            (
                FIRMWARE_FILE.into(),
                FileKind::Firmware,
                b"\x7fELF firmware".to_vec(),
            ),
        ],
    );
    let run = unpack(&good, &out);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(
        std::fs::read(out.join("firmware/edgevlm-device")).unwrap(),
        b"\x7fELF firmware"
    );
    assert!(out.join("manifest.json").is_file());
}

#[test]
fn a_second_keygen_refuses_to_overwrite_the_secret_key() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let keygen = || {
        Command::new(binary("edgevlm"))
            .args(["keygen", "--out", keys.to_str().unwrap(), "--name", "fleet"])
            .output()
            .unwrap()
    };
    assert!(keygen().status.success());
    let secret = std::fs::read(keys.join("fleet.key")).unwrap();
    let public = std::fs::read(keys.join("fleet.pub")).unwrap();
    let again = keygen();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "second keygen succeeded");
    assert!(stderr.contains("fleet.key: already exists"), "{stderr}");
    assert_eq!(std::fs::read(keys.join("fleet.key")).unwrap(), secret);
    assert_eq!(std::fs::read(keys.join("fleet.pub")).unwrap(), public);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(keys.join("fleet.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A decoder whose vocabulary differs from its tokenizer's (ids it could not
/// spell) is refused when the bundle loads, naming both sizes.
#[test]
fn a_bundle_whose_decoder_and_tokenizer_disagree_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = std::fs::read(edgevlm_tests::fixture("bert-tokenizer.json")).unwrap();
    let files = vec![
        ("tokenizer.json".into(), FileKind::Tokenizer, tokenizer.clone()),
        (
            edgevlm_shared::bundle::DECODER_TOKENIZER_FILE.into(),
            FileKind::DecoderTokenizer,
            tokenizer,
        ),
    ];
    let caption = |bundle: &Path| {
        let out = Command::new(binary("edgevlm-device"))
            .args(["caption", "any.png", "--bundle", bundle.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let bundle = tmp.path().join("vocab.bundle");
    write_bundle(&bundle, files);
    let err = caption(&bundle);
    assert!(
        err.contains("`decoder.vocab` is 10, but the caption decoder's tokenizer has"),
        "{err}"
    );
}
