//! Argos encrypted mode: the cipher that wraps queries and response bodies.
//!
//! When an account switches encryption on, the query object travels as one
//! encrypted `data` parameter and answers come back as
//! `{"data": "<encrypted>", "isEncrypted": true}`. Argos's guide (as of
//! 2024-08-01) names AES-256 in ECB mode with the key = the 32 raw bytes of
//! SHA-256 over the API key string; padding (PKCS#7) and text form (standard
//! base64) are this project's decisions, checked against `openssl enc` output
//! in `tests/fixtures/crypto/`.
//!
//! **ECB leaks patterns**: equal 16-byte blocks of plain text give equal blocks
//! of cipher text, and there is no integrity check. It is the vendor's scheme,
//! so it is supported as is; it is not a choice this project would make. The
//! [`Cipher`] trait keeps the scheme replaceable (Argos also offers a GCM
//! variant whose byte layout is not published yet).

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Encrypts and decrypts the text Argos exchanges in encrypted mode.
pub trait Cipher: Send + Sync {
    /// Plain bytes -> the text sent on the wire.
    fn encrypt(&self, plain: &[u8]) -> String;
    /// Text from the wire -> plain bytes.
    fn decrypt(&self, text: &str) -> Result<Vec<u8>, CryptoError>;
}

/// Why an encrypted text could not be read. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("encrypted data is not valid base64: {0}")]
    Base64(String),
    #[error(
        "encrypted data does not decrypt with this API key (wrong key, or bad padding); \
         check that the key matches the account"
    )]
    Decrypt,
}

/// AES-256-ECB with PKCS#7 and base64, key = SHA-256(API key).
pub struct AesEcb {
    key: [u8; 32],
}

impl AesEcb {
    /// Derives the key from the API key string, as Argos does.
    pub fn from_api_key(api_key: &SecretString) -> Self {
        let digest = Sha256::digest(api_key.expose_secret().as_bytes());
        AesEcb { key: digest.into() }
    }
}

impl std::fmt::Debug for AesEcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesEcb([REDACTED])")
    }
}

type EcbEnc = ecb::Encryptor<Aes256>;
type EcbDec = ecb::Decryptor<Aes256>;

impl Cipher for AesEcb {
    fn encrypt(&self, plain: &[u8]) -> String {
        let ct = EcbEnc::new(&self.key.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
        STANDARD.encode(ct)
    }

    fn decrypt(&self, text: &str) -> Result<Vec<u8>, CryptoError> {
        let ct = STANDARD
            .decode(text.trim())
            .map_err(|e| CryptoError::Base64(e.to_string()))?;
        EcbDec::new(&self.key.into())
            .decrypt_padded_vec_mut::<Pkcs7>(&ct)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let c = AesEcb::from_api_key(&SecretString::from("k1"));
        let t = c.encrypt(br#"{"email":"a@b.c"}"#);
        assert_eq!(c.decrypt(&t).unwrap(), br#"{"email":"a@b.c"}"#);
        let other = AesEcb::from_api_key(&SecretString::from("k2"));
        // A wrong key almost always breaks the padding; if not, the bytes differ.
        match other.decrypt(&t) {
            Err(e) => assert_eq!(e, CryptoError::Decrypt),
            Ok(p) => assert_ne!(p, br#"{"email":"a@b.c"}"#),
        }
        assert!(matches!(c.decrypt("***"), Err(CryptoError::Base64(_))));
        assert_eq!(format!("{c:?}"), "AesEcb([REDACTED])");
    }
}
