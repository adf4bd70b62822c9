//! KeyDir: layout, permissions, atomic writes, username checks.

use std::os::unix::fs::PermissionsExt;

use flock_store::{KeyDir, StoreError, validate_username};

mod common;
use common::mode;

const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n";

#[test]
fn layout_and_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(root.path(), "alice").unwrap();
    assert_eq!(keys.path(), root.path().join("alice"));
    assert!(!keys.exists());
    assert_eq!(keys.load_private_pem().unwrap(), None);
    assert_eq!(keys.load_public_pem().unwrap(), None);
    assert_eq!(keys.load_contact_pem("bob").unwrap(), None);

    keys.save_private_pem(PRIVATE).unwrap();
    assert!(!keys.exists(), "needs both halves");
    keys.save_public_pem(PUBLIC).unwrap();
    assert!(keys.exists());
    keys.save_contact_pem("bob", PUBLIC).unwrap();

    assert_eq!(
        keys.private_path(),
        root.path().join("alice").join("private.pem")
    );
    assert_eq!(
        keys.public_path(),
        root.path().join("alice").join("public.pem")
    );
    assert_eq!(
        keys.contact_path("bob").unwrap(),
        root.path().join("alice").join("contacts").join("bob.pem")
    );
    assert_eq!(keys.load_private_pem().unwrap().as_deref(), Some(PRIVATE));
    assert_eq!(keys.load_public_pem().unwrap().as_deref(), Some(PUBLIC));
    assert_eq!(
        keys.load_contact_pem("bob").unwrap().as_deref(),
        Some(PUBLIC)
    );

    // Overwrite replaces the whole file and leaves no temporary files behind.
    let other = PUBLIC.replace("MIIB", "MIIC");
    keys.save_contact_pem("bob", &other).unwrap();
    assert_eq!(
        keys.load_contact_pem("bob").unwrap().as_deref(),
        Some(other.as_str())
    );
    for dir in [keys.path().to_owned(), keys.path().join("contacts")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".tmp"), "left over {name}");
        }
    }
}

#[test]
fn private_key_is_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(root.path(), "alice").unwrap();
    keys.save_private_pem(PRIVATE).unwrap();
    assert_eq!(mode(&keys.private_path()), 0o600);
    assert_eq!(mode(keys.path()) & 0o077, 0, "key directory is owner-only");
    // Rewriting keeps 0600 even if the old file had been loosened.
    std::fs::set_permissions(keys.private_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    keys.save_private_pem(PRIVATE).unwrap();
    assert_eq!(mode(&keys.private_path()), 0o600);
}

#[test]
fn rejects_unsafe_usernames() {
    let root = tempfile::tempdir().unwrap();
    for bad in [
        "..",
        "../x",
        "a/b",
        "a\\b",
        ".hidden",
        "ab",
        "",
        "dash-ed",
        "sp ace",
        "nul\0x",
        "twentyonecharacters_x",
    ] {
        assert!(
            matches!(
                KeyDir::new(root.path(), bad),
                Err(StoreError::InvalidUsername(_))
            ),
            "{bad:?}"
        );
        assert!(validate_username(bad).is_err(), "{bad:?}");
    }
    let keys = KeyDir::new(root.path(), "alice").unwrap();
    assert!(matches!(
        keys.save_contact_pem("../../etc/passwd", PUBLIC),
        Err(StoreError::InvalidUsername(_))
    ));
    assert!(matches!(
        keys.load_contact_pem(".."),
        Err(StoreError::InvalidUsername(_))
    ));
    for good in ["abc", "user_1", "Ünïcode", "twentycharacters_xyz"] {
        assert!(validate_username(good).is_ok(), "{good:?}");
    }
}

#[test]
fn bad_files_are_errors_not_panics() {
    let root = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(root.path(), "alice").unwrap();
    // Not PEM text: refused before it can overwrite a key.
    assert!(matches!(
        keys.save_private_pem("TUlJRQ=="),
        Err(StoreError::Io { .. })
    ));
    std::fs::create_dir_all(keys.path()).unwrap();
    std::fs::write(keys.private_path(), [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(
        keys.load_private_pem(),
        Err(StoreError::Io { .. })
    ));
    std::fs::write(keys.public_path(), "x".repeat(100_000)).unwrap();
    assert!(matches!(keys.load_public_pem(), Err(StoreError::Io { .. })));
}
