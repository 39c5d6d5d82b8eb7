//! Credentials at rest: provider API keys stored by the operator API are sealed with
//! AES-256-GCM under a master key that lives outside the database (env or file).
//!
//! A sealed value is `nonce (12 bytes) ‖ ciphertext ‖ tag`, bound to what it belongs to
//! (the provider's name, as associated data) so a ciphertext moved to another row does
//! not open. Plaintext is only ever held in a [`Secret`]; nothing here logs.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::config::Secret;

const NONCE: usize = 12;

/// The key that seals stored credentials.
pub struct MasterKey(Aes256Gcm);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the master key must be 32 bytes, written as 64 hex characters")]
    BadKey,
    #[error("cannot read the master key file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("a stored credential does not open with this master key (wrong key, or tampered)")]
    Open,
    #[error("cannot seal a credential")]
    Seal,
}

fn hex_decode(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl MasterKey {
    /// From 64 hex characters (e.g. `openssl rand -hex 32`).
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let bytes = hex_decode(text).ok_or(SecretError::BadKey)?;
        Aes256Gcm::new_from_slice(&bytes)
            .map(MasterKey)
            .map_err(|_| SecretError::BadKey)
    }

    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecretError::Read(path.display().to_string(), e))?;
        Self::from_hex(&text)
    }

    /// Seals `plaintext` for `owner` under a fresh random nonce.
    pub fn seal(&self, plaintext: &Secret, owner: &str) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::Seal)?;
        let sealed = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.expose().as_bytes(),
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) produced for the same `owner`.
    pub fn open(&self, sealed: &[u8], owner: &str) -> Result<Secret, SecretError> {
        if sealed.len() < NONCE + 16 {
            return Err(SecretError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| SecretError::Open)?;
        let plain = self
            .0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_credentials_open_only_with_their_key_and_owner() {
        let key = MasterKey::from_hex(K1).unwrap();
        let secret = Secret::new("sk-live-very-secret");
        let sealed = key.seal(&secret, "openai").unwrap();
        assert!(
            !sealed
                .windows(b"very-secret".len())
                .any(|w| w == b"very-secret"),
            "no plaintext in the sealed bytes"
        );
        assert_eq!(key.open(&sealed, "openai").unwrap(), secret);
        assert_ne!(
            key.seal(&secret, "openai").unwrap(),
            sealed,
            "fresh nonce each time"
        );
        assert!(key.open(&sealed, "other").is_err(), "bound to its owner");
        assert!(
            MasterKey::from_hex(K2)
                .unwrap()
                .open(&sealed, "openai")
                .is_err()
        );
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(key.open(&tampered, "openai").is_err());
        assert!(MasterKey::from_hex("abc").is_err());
    }
}
