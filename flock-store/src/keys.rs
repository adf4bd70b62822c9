//! Key files: `keys/<user>/private.pem`, `public.pem` and `contacts/<peer>.pem`.
//!
//! This module stores and loads PEM text only; parsing and cryptography belong to
//! `flock-crypto`. Every write is atomic (temporary file, `fsync`, `rename`, `fsync` of
//! the directory), so a crash leaves the old file or the new one, never half of one.
//! The private key file is created with mode `0600` and the user's directory with
//! `0700`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StoreError};
use crate::username::validate_username;

/// Largest key file read back (an RSA-4096 private key PEM is about 3.3 KB).
const MAX_PEM_BYTES: u64 = 64 * 1024;

/// Mode of the private key file.
const PRIVATE_MODE: u32 = 0o600;
/// Mode of public key files.
const PUBLIC_MODE: u32 = 0o644;
/// Mode of the user's key directory and its `contacts/` directory.
const DIR_MODE: u32 = 0o700;

/// Distinguishes temporary files written concurrently by one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One user's key directory, `<root>/<user>/`.
///
/// ```
/// use flock_store::KeyDir;
///
/// # fn main() -> Result<(), flock_store::StoreError> {
/// # let root = std::env::temp_dir().join(format!("flock-keydir-doc-{}", std::process::id()));
/// let keys = KeyDir::new(&root, "alice")?; // root is the client's `keys/` directory
/// assert!(KeyDir::new(&root, "../etc").is_err());
/// keys.save_contact_pem("bob", "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n")?;
/// assert!(keys.load_contact_pem("bob")?.is_some());
/// assert!(!keys.exists()); // no identity of our own yet
/// # std::fs::remove_dir_all(&root).ok();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The key directory of `user` under `root` (the original's `keys/`). Nothing is
    /// created until a key is saved. `user` must be a valid username (3-20 letters,
    /// digits or `_`), which keeps it a single path component.
    pub fn new(root: impl AsRef<Path>, user: &str) -> Result<Self> {
        validate_username(user)?;
        Ok(Self {
            dir: root.as_ref().join(user),
        })
    }

    /// `<root>/<user>`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<root>/<user>/private.pem`.
    pub fn private_path(&self) -> PathBuf {
        self.dir.join("private.pem")
    }

    /// `<root>/<user>/public.pem`.
    pub fn public_path(&self) -> PathBuf {
        self.dir.join("public.pem")
    }

    /// `<root>/<user>/contacts/<peer>.pem`, after checking `peer` is a valid username.
    pub fn contact_path(&self, peer: &str) -> Result<PathBuf> {
        validate_username(peer)?;
        Ok(self.dir.join("contacts").join(format!("{peer}.pem")))
    }

    /// Whether both the private and the public key files exist (a registered identity).
    pub fn exists(&self) -> bool {
        self.private_path().is_file() && self.public_path().is_file()
    }

    /// Writes the private key PEM (PKCS#8, possibly encrypted) atomically, mode `0600`.
    pub fn save_private_pem(&self, pem: &str) -> Result<()> {
        let path = self.private_path();
        check_pem(&path, pem)?;
        self.create_dir(&self.dir)?;
        write_atomic(&path, pem.as_bytes(), PRIVATE_MODE)
    }

    /// The private key PEM, or `None` if there is none.
    pub fn load_private_pem(&self) -> Result<Option<String>> {
        read_pem(&self.private_path())
    }

    /// Writes the public key PEM (SPKI) atomically.
    pub fn save_public_pem(&self, pem: &str) -> Result<()> {
        let path = self.public_path();
        check_pem(&path, pem)?;
        self.create_dir(&self.dir)?;
        write_atomic(&path, pem.as_bytes(), PUBLIC_MODE)
    }

    /// The public key PEM, or `None` if there is none.
    pub fn load_public_pem(&self) -> Result<Option<String>> {
        read_pem(&self.public_path())
    }

    /// Writes a contact's public key PEM atomically.
    pub fn save_contact_pem(&self, peer: &str, pem: &str) -> Result<()> {
        let path = self.contact_path(peer)?;
        check_pem(&path, pem)?;
        self.create_dir(&self.dir)?;
        self.create_dir(&self.dir.join("contacts"))?;
        write_atomic(&path, pem.as_bytes(), PUBLIC_MODE)
    }

    /// A contact's public key PEM, or `None` if there is none.
    pub fn load_contact_pem(&self, peer: &str) -> Result<Option<String>> {
        read_pem(&self.contact_path(peer)?)
    }

    fn create_dir(&self, dir: &Path) -> Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|source| io_err(dir, source))
    }
}

fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn not_pem(path: &Path, why: &str) -> StoreError {
    io_err(
        path,
        io::Error::new(io::ErrorKind::InvalidData, why.to_owned()),
    )
}

/// A PEM document starts with a `-----BEGIN ` line; catches base64 or DER passed by
/// mistake before it overwrites a key.
fn check_pem(path: &Path, pem: &str) -> Result<()> {
    if !pem.starts_with("-----BEGIN ") {
        return Err(not_pem(path, "not PEM text (no -----BEGIN line)"));
    }
    if pem.len() as u64 > MAX_PEM_BYTES {
        return Err(not_pem(path, "PEM text too large"));
    }
    Ok(())
}

fn read_pem(path: &Path) -> Result<Option<String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(not_pem(path, "key file too large"));
    }
    let text = String::from_utf8(bytes).map_err(|_| not_pem(path, "key file is not UTF-8"))?;
    check_pem(path, &text)?;
    Ok(Some(text))
}

/// Write to a fresh temporary file beside `path` with `mode`, sync it, rename it over
/// `path`, then sync the directory so the rename itself is durable.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io_err(path, io::Error::other("no parent directory")))?;
    let name = path
        .file_name()
        .ok_or_else(|| io_err(path, io::Error::other("no file name")))?
        .to_string_lossy();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    // A stale file of that name (same pid after a crash) may have other permissions:
    // remove it so `create_new` applies `mode` to a file only we can have opened.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp, e)),
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    Ok(())
}
