//! The key format, random generation, the keyed hash, and the server secret file.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Every access key starts with this, so secret scanners can recognise leaked keys.
pub const KEY_PREFIX: &str = "ig-";
/// Management tokens start with this; they never authenticate on `/v1`.
pub const TOKEN_PREFIX: &str = "igm-";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 40;
const ID_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const SECRET_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random string of `len` characters from `alphabet` (rejection-sampled, unbiased).
fn random_string(len: usize, alphabet: &[u8]) -> std::io::Result<String> {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(std::io::Error::other)?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

/// A random lowercase alphanumeric id (used for key ids, account ids, request ids).
pub fn random_id(len: usize) -> std::io::Result<String> {
    random_string(len, ID_ALPHABET)
}

/// Appends `n` in lowercase hex, zero-padded to at least `digits` digits: what
/// `format!("{n:0digits$x}")` writes, without formatting machinery (request and answer
/// ids are written on every request).
pub fn push_hex(out: &mut String, n: u64, digits: u32) {
    // `hex` pads to 16 digits at most, all a `u64` has; wider padding is zeros before it.
    for _ in 16..digits {
        out.push('0');
    }
    out.push_str(hex(n, digits, &mut [0; 16]));
}

/// `n` in lowercase hex, zero-padded to at least `digits` digits (16 at most), written
/// into the end of `buf` from a table: for ids written in place (`wire::JsonBuf::id`).
pub fn hex(n: u64, digits: u32, buf: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (u64::BITS - n.leading_zeros())
        .div_ceil(4)
        .max(digits)
        .min(16) as usize;
    let start = buf.len() - digits;
    for (i, b) in buf[start..].iter_mut().rev().enumerate() {
        *b = DIGITS[((n >> (4 * i)) & 0xf) as usize];
    }
    // Hex digits are ASCII: the check never fails.
    std::str::from_utf8(&buf[start..]).unwrap_or_default()
}

/// A freshly generated key: the plaintext, shown once, and what gets stored.
pub struct NewKey {
    pub id: String,
    /// The full `ig-…` key. Shown to the user once, never stored or logged.
    pub plaintext: Secret,
    pub hash: KeyHash,
}

/// The stored form of a key's secret: HMAC-SHA-256(server secret, id ‖ secret).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHash([redacted])")
    }
}

/// A presented key split into its parts; borrows the header value.
pub struct ParsedKey<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

impl<'a> ParsedKey<'a> {
    /// Parses an access key (`ig-…`).
    pub fn parse(text: &'a str) -> Option<Self> {
        Self::parse_with(KEY_PREFIX, text)
    }

    /// Parses a credential of the given prefix (`ig-` or `igm-`).
    pub fn parse_with(prefix: &str, text: &'a str) -> Option<Self> {
        let rest = text.strip_prefix(prefix)?;
        let (id, secret) = rest.split_once('-')?;
        let ok = id.len() == ID_LEN
            && secret.len() == SECRET_LEN
            && id.bytes().all(in_id_alphabet)
            && secret.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then_some(Self { id, secret })
    }
}

/// Whether `b` is in `ID_ALPHABET`, without scanning it (every request's key is checked).
fn in_id_alphabet(b: u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_lowercase()
}

/// Computes and verifies key hashes with the server secret.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    pub fn new(server_secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail; fall back defensively anyway.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(server_secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        Self { mac }
    }

    pub fn hash(&self, id: &str, secret: &str) -> KeyHash {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b":");
        mac.update(secret.as_bytes());
        KeyHash(mac.finalize().into_bytes().into())
    }

    /// Constant-time comparison of a presented key against a stored hash.
    pub fn verify(&self, key: &ParsedKey<'_>, stored: &KeyHash) -> bool {
        let computed = self.hash(key.id, key.secret);
        computed.0.ct_eq(&stored.0).into()
    }

    /// Generates a new access key.
    pub fn generate(&self) -> std::io::Result<NewKey> {
        self.generate_with(KEY_PREFIX, random_string(ID_LEN, ID_ALPHABET)?)
    }

    /// Generates a new secret for an existing id (rotation keeps the id).
    pub fn regenerate(&self, id: &str) -> std::io::Result<NewKey> {
        self.generate_with(KEY_PREFIX, id.to_owned())
    }

    /// Generates a management token (`igm-…`).
    pub fn generate_token(&self) -> std::io::Result<NewKey> {
        self.generate_with(TOKEN_PREFIX, random_string(ID_LEN, ID_ALPHABET)?)
    }

    fn generate_with(&self, prefix: &str, id: String) -> std::io::Result<NewKey> {
        let secret = random_string(SECRET_LEN, SECRET_ALPHABET)?;
        let hash = self.hash(&id, &secret);
        let plaintext = Secret::new(format!("{prefix}{id}-{secret}"));
        Ok(NewKey {
            id,
            plaintext,
            hash,
        })
    }

    /// A token derived from another under `purpose`: the keyed hash as 64 hex characters.
    /// Anyone holding `input` and the server secret can recompute it, so it never needs
    /// storing (the CSRF token is derived from the session token this way).
    pub fn derive(&self, purpose: &str, input: &str) -> String {
        use std::fmt::Write as _;
        let hash = self.hash(purpose, input);
        let mut out = String::with_capacity(64);
        for b in hash.0 {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// A random opaque token (sessions) and its keyed hash under `purpose`.
    pub fn opaque(&self, purpose: &str) -> std::io::Result<(Secret, KeyHash)> {
        let token = random_string(SECRET_LEN, SECRET_ALPHABET)?;
        let hash = self.hash(purpose, &token);
        Ok((Secret::new(token), hash))
    }
}

/// The server secret: from config/env when given, else `<data_dir>/secret.key`
/// (created on first use with mode 0600).
pub fn load_or_create_secret(
    configured: Option<&Secret>,
    data_dir: &Path,
) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.expose().as_bytes().to_vec());
    }
    let path = data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    crate::files::private_dir(data_dir)?;
    let secret = random_string(64, SECRET_ALPHABET)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_check_accepts_exactly_the_id_alphabet() {
        for b in 0..=u8::MAX {
            assert_eq!(in_id_alphabet(b), ID_ALPHABET.contains(&b), "byte {b}");
        }
    }

    #[test]
    fn hex_ids_are_what_format_writes() {
        for n in [0, 1, 0xabc, 0xff_ffff_ffff, 0x1_0000_0000_0000, u64::MAX] {
            for digits in [1, 10, 12, 16, 20] {
                let mut out = String::from("x_");
                push_hex(&mut out, n, digits);
                assert_eq!(out, format!("x_{n:0width$x}", width = digits as usize));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn hex_digits_are_what_format_writes(n in proptest::prelude::any::<u64>(), digits in 0u32..=16) {
            let mut buf = [0; 16];
            proptest::prop_assert_eq!(
                hex(n, digits, &mut buf),
                format!("{n:0width$x}", width = digits as usize)
            );
        }
    }

    #[test]
    fn generated_keys_parse_and_verify() {
        let h = KeyHasher::new(b"server-secret");
        let k = h.generate().unwrap();
        let text = k.plaintext.expose();
        assert!(text.starts_with("ig-"));
        let parsed = ParsedKey::parse(text).unwrap();
        assert_eq!(parsed.id, k.id);
        assert!(h.verify(&parsed, &k.hash));
    }

    #[test]
    fn a_different_server_secret_does_not_verify() {
        let k = KeyHasher::new(b"one").generate().unwrap();
        let parsed = ParsedKey::parse(k.plaintext.expose()).unwrap();
        assert!(!KeyHasher::new(b"two").verify(&parsed, &k.hash));
    }

    #[test]
    fn derived_tokens_are_stable_per_input_purpose_and_secret() {
        let h = KeyHasher::new(b"one");
        let t = h.derive("csrf-token", "session");
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(t, h.derive("csrf-token", "session"));
        assert_ne!(t, h.derive("csrf-token", "other session"));
        assert_ne!(t, h.derive("other", "session"));
        assert_ne!(t, KeyHasher::new(b"two").derive("csrf-token", "session"));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "",
            "ig-",
            "sk-abc",
            "ig-short-secret",
            "ig-0123456789abcdef-tooshort",
        ] {
            assert!(ParsedKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn secret_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(None, dir.path()).unwrap();
        let b = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
