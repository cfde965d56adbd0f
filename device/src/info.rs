//! `edgevlm-device info`: a bundle's manifest, readably.

use std::fmt::Write;

use edgevlm_shared::bundle::Bundle;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn describe(bundle: &Bundle, size: u64) -> String {
    let m = &bundle.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "bundle        {}", bundle.origin());
    let _ = writeln!(s, "format        {}", m.format_version);
    let _ = writeln!(s, "name          {}", m.name);
    let _ = writeln!(s, "model version {}", m.model_version);
    let _ = writeln!(s, "created       {} (unix seconds)", m.created);
    let _ = writeln!(s, "weights       {:?}", m.weights);
    let _ = writeln!(s, "size          {size} bytes");
    let p = &m.preprocess;
    let _ = writeln!(
        s,
        "preprocess    {} px, mean {:?}, std {:?}",
        p.image_size, p.mean, p.std
    );
    let _ = writeln!(s, "text          up to {} tokens", m.max_text_len);
    let d = &m.decoder;
    let _ = writeln!(
        s,
        "decoder       {} layers, {} heads x {}, vocabulary {}, captions up to {} tokens",
        d.layers, d.heads, d.d_head, d.vocab, d.max_len
    );
    if let Some(c) = &m.decoding {
        let rerank = c
            .consensus
            .map(|r| {
                format!(
                    ", reranked against the {} nearest training captions (weight {})",
                    r.neighbours, r.weight
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "decoding      beam {}, length penalty {}{rerank}",
            c.beam_size, c.length_penalty
        );
    }
    let shown: Vec<&str> = m.answers.iter().take(12).map(String::as_str).collect();
    let _ = writeln!(
        s,
        "answers       {}{}{}",
        m.answers.len(),
        if shown.is_empty() { "" } else { ": " },
        shown.join(", ") + if m.answers.len() > 12 { ", …" } else { "" }
    );
    let _ = writeln!(s, "files:");
    for f in &m.files {
        let _ = writeln!(
            s,
            "  {:<28} {:<14} {:>10} bytes  sha256 {}",
            f.name,
            format!("{:?}", f.kind),
            f.len,
            hex(&f.sha256)
        );
    }
    if let Some(t) = &m.selftest {
        let _ = writeln!(s, "self-test     image {}: caption {:?}", t.image, t.caption);
        if let Some((q, a)) = &t.vqa {
            let _ = writeln!(s, "              {q:?} -> {a:?}");
        }
    }
    s
}
