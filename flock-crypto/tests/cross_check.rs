//! Artifacts for checking our output with the original's library (Python `cryptography`).
//!
//! Ignored by default (needs Python). Run:
//! ```text
//! FLOCK_XCHECK_DIR=/tmp/xcheck cargo test -p flock-crypto --test cross_check -- --ignored
//! python3 flock-crypto/tests/cross_check.py /tmp/xcheck
//! ```

mod common;

use std::path::PathBuf;

use common::rng;
use flock_crypto::{PrivateKey, seal_b64, sign_b64};

#[test]
#[ignore = "writes files for tests/cross_check.py"]
fn write_cross_check_artifacts() {
    let dir = PathBuf::from(std::env::var("FLOCK_XCHECK_DIR").expect("set FLOCK_XCHECK_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rng(2024);
    let key = PrivateKey::generate(&mut rng).unwrap();
    let public = key.public_key();
    let texts = ["hello", "", "¡hola, señor! 👋", "alice|10.0.0.1|5000|1|key"];
    let mut lines = vec![
        format!("public_b64 {}", public.to_b64()),
        format!("fingerprint {}", public.fingerprint()),
    ];
    for text in texts {
        let text_b64 = base64_of(text.as_bytes());
        let sealed = seal_b64(&mut rng, public, text.as_bytes()).unwrap();
        let sig = sign_b64(&mut rng, &key, text.as_bytes()).unwrap();
        lines.push(format!("sealed {text_b64} {sealed}"));
        lines.push(format!("signature {text_b64} {sig}"));
    }
    std::fs::write(dir.join("artifacts.txt"), lines.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("private.pem"), key.to_pem().unwrap().as_bytes()).unwrap();
    std::fs::write(
        dir.join("private_encrypted.pem"),
        key.to_encrypted_pem(&mut rng, "flock-secret").unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("public.pem"), public.to_pem()).unwrap();
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
