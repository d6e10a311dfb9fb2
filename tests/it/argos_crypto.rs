//! Encrypted mode against vectors produced by `openssl enc` (see
//! tests/fixtures/crypto/README.md for the exact commands).

use kyc_sentinel::argos::crypto::{AesEcb, Cipher, CryptoError};
use secrecy::SecretString;

fn read(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/crypto/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cipher() -> AesEcb {
    AesEcb::from_api_key(&SecretString::from(read("api_key.txt")))
}

#[test]
fn matches_openssl_both_ways() {
    let c = cipher();
    for name in ["query", "response"] {
        let plain = read(&format!("{name}.plain.json"));
        let enc = read(&format!("{name}.enc.txt"));
        assert_eq!(c.encrypt(plain.as_bytes()), enc.trim(), "{name}: encrypt");
        assert_eq!(
            c.decrypt(&enc).unwrap(),
            plain.as_bytes(),
            "{name}: decrypt"
        );
    }
}

#[test]
fn wrong_key_is_a_clear_error() {
    let other = AesEcb::from_api_key(&SecretString::from("another-key"));
    let enc = read("query.enc.txt");
    assert_eq!(other.decrypt(&enc).unwrap_err(), CryptoError::Decrypt);
    assert_eq!(
        CryptoError::Decrypt.to_string(),
        "encrypted data does not decrypt with this API key (wrong key, or bad padding); check that the key matches the account"
    );
}
