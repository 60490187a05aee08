//! The WeCom callback encryption protocol (企业微信 "加解密方案"), written on audited
//! primitives: SHA-1 (`sha1`), AES-256-CBC (`aes` + `cbc`) and base64.
//!
//! - Signature: hex(SHA-1 of the token, the timestamp, the nonce and the encrypted text,
//!   sorted as byte strings and concatenated).
//! - Key: base64-decode(EncodingAESKey + "="), 32 bytes; the IV is its first 16 bytes.
//! - Plaintext: 16 random bytes ‖ message length (4 bytes, big-endian) ‖ message ‖ receive id
//!   (the corp id for a self-built app), PKCS#7-padded to a **32-byte** block: pad values run
//!   from 1 to 32, so a 16-byte unpadder rejects valid messages. The padding is protocol, done
//!   here; the cipher runs without padding.
//!
//! CBC authenticates nothing: the signature (which covers the ciphertext) is what proves a
//! message came from WeCom, so callers verify it before decrypting.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};
pub use zhiku_core::config::{AesKeyError, decode_aes_key};

/// The protocol's padding block, bytes.
const PAD_BLOCK: usize = 32;
/// AES block, bytes.
const AES_BLOCK: usize = 16;
/// Random prefix + length field, bytes.
const HEADER: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(transparent)]
    Key(#[from] AesKeyError),
    #[error("the signature does not match (is wecom.token the Token set in the WeCom console?)")]
    Signature,
    #[error("the encrypted text is not base64")]
    NotBase64,
    #[error("the encrypted text is not a whole number of AES blocks")]
    Length,
    #[error(
        "the decrypted text has invalid padding (wrong wecom.encoding_aes_key, or tampered ciphertext)"
    )]
    Padding,
    #[error("the decrypted text is malformed: {0}")]
    Malformed(&'static str),
    #[error("the message is for receive id `{got}`, not this app's corp id `{expected}`")]
    Receiver { got: String, expected: String },
}

/// The keys of one WeCom app: signs, verifies, encrypts and decrypts callback messages.
#[derive(Clone)]
pub struct Crypto {
    token: String,
    key: [u8; 32],
    receive_id: String,
}

/// Secrets stay out of logs.
impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto")
            .field("receive_id", &self.receive_id)
            .finish_non_exhaustive()
    }
}

impl Crypto {
    /// `receive_id`: the corp id (self-built apps).
    pub fn new(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<Self, CryptoError> {
        Ok(Self {
            token: token.to_string(),
            key: decode_aes_key(encoding_aes_key)?,
            receive_id: receive_id.to_string(),
        })
    }

    /// The signature WeCom computes over these values.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let mut h = Sha1::new();
        for p in parts {
            h.update(p.as_bytes());
        }
        format!("{:x}", h.finalize())
    }

    /// Check `msg_signature` (compared in constant time).
    pub fn verify(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypted);
        if zhiku_core::access::secrets_equal(&expected, &msg_signature.trim().to_ascii_lowercase())
        {
            Ok(())
        } else {
            Err(CryptoError::Signature)
        }
    }

    /// Decrypt `encrypted` (base64) and return the message, after checking its padding,
    /// length field and receive id.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, CryptoError> {
        let mut buf = STANDARD
            .decode(encrypted.trim())
            .map_err(|_| CryptoError::NotBase64)?;
        if buf.is_empty() || buf.len() % AES_BLOCK != 0 {
            return Err(CryptoError::Length);
        }
        let dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(&self.key, &self.key[..16])
            .expect("32-byte key, 16-byte IV");
        let plain = dec
            .decrypt_padded::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::Length)?;
        let plain = unpad(plain)?;
        if plain.len() < HEADER {
            return Err(CryptoError::Malformed("shorter than its header"));
        }
        let len = u32::from_be_bytes(plain[16..HEADER].try_into().expect("4 bytes")) as usize;
        let rest = &plain[HEADER..];
        if len > rest.len() {
            return Err(CryptoError::Malformed("its length field exceeds the text"));
        }
        let (message, receiver) = rest.split_at(len);
        if receiver != self.receive_id.as_bytes() {
            return Err(CryptoError::Receiver {
                got: String::from_utf8_lossy(receiver).into_owned(),
                expected: self.receive_id.clone(),
            });
        }
        String::from_utf8(message.to_vec()).map_err(|_| CryptoError::Malformed("not UTF-8"))
    }

    /// Encrypt `message` with a fresh random prefix, as WeCom does (for replies and tests).
    pub fn encrypt(&self, message: &str) -> String {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).expect("the system random source works");
        self.encrypt_with(random, message)
    }

    /// Encrypt with the given random prefix (reproducible for tests).
    pub fn encrypt_with(&self, random: [u8; 16], message: &str) -> String {
        let body = message.as_bytes();
        let unpadded = HEADER + body.len() + self.receive_id.len();
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut buf = Vec::with_capacity(unpadded + pad);
        buf.extend_from_slice(&random);
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(body);
        buf.extend_from_slice(self.receive_id.as_bytes());
        buf.resize(unpadded + pad, pad as u8);
        let n = buf.len();
        let enc = cbc::Encryptor::<aes::Aes256>::new_from_slices(&self.key, &self.key[..16])
            .expect("32-byte key, 16-byte IV");
        let out = enc
            .encrypt_padded::<NoPadding>(&mut buf, n)
            .expect("a whole number of blocks");
        STANDARD.encode(out)
    }
}

/// Strip the protocol's PKCS#7 padding (pad values 1–32).
fn unpad(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let &last = plain.last().ok_or(CryptoError::Padding)?;
    let n = last as usize;
    if n == 0 || n > PAD_BLOCK || n > plain.len() {
        return Err(CryptoError::Padding);
    }
    let (text, pad) = plain.split_at(plain.len() - n);
    if pad.iter().any(|&b| b != last) {
        return Err(CryptoError::Padding);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The public vector of the official SDK samples.
    const TOKEN: &str = "QDG6eK";
    const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const CORP: &str = "wx5823bf96d3bd56c7";
    const TIMESTAMP: &str = "1409659589";
    const NONCE: &str = "263014780";
    const ECHOSTR: &str =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
    const SIGNATURE: &str = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3";

    fn official() -> Crypto {
        Crypto::new(TOKEN, AES_KEY, CORP).unwrap()
    }

    fn random_bytes<const N: usize>() -> [u8; N] {
        let mut b = [0u8; N];
        getrandom::fill(&mut b).unwrap();
        b
    }

    fn random_crypto() -> Crypto {
        let key: [u8; 32] = random_bytes();
        let encoded = STANDARD.encode(key);
        Crypto::new("tok", encoded.trim_end_matches('='), CORP).unwrap()
    }

    #[test]
    fn official_vector_verifies_and_decrypts() {
        let c = official();
        assert_eq!(c.signature(TIMESTAMP, NONCE, ECHOSTR), SIGNATURE);
        c.verify(SIGNATURE, TIMESTAMP, NONCE, ECHOSTR).unwrap();
        assert_eq!(c.decrypt(ECHOSTR).unwrap(), "1616140317555161061");
    }

    #[test]
    fn official_vector_uses_a_32_byte_pad() {
        // The vector's 20 + 19 + 18 = 57 bytes pad to 64 with seven 7s; a 30-byte message
        // (68 bytes) pads to 96 with twenty-eight 28s, which a 16-byte padder would make 80.
        let c = official();
        let long = "x".repeat(30);
        let e = c.encrypt(&long);
        assert_eq!(STANDARD.decode(&e).unwrap().len(), 96);
        assert_eq!(c.decrypt(&e).unwrap(), long);
    }

    #[test]
    fn round_trips_every_length_with_random_keys() {
        for len in 0..=100 {
            let c = random_crypto();
            let message: String = random_bytes::<100>()[..len]
                .iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect();
            let e = c.encrypt(&message);
            assert_eq!(c.decrypt(&e).unwrap(), message, "length {len}");
        }
    }

    #[test]
    fn round_trips_a_long_chinese_message() {
        let c = random_crypto();
        let message = format!(
            "<xml><Content><![CDATA[{}]]></Content></xml>",
            "年假怎么申请？请在系统中提交，经主管审批后生效。".repeat(200)
        );
        let e = c.encrypt(&message);
        assert_eq!(c.decrypt(&e).unwrap(), message);
    }

    #[test]
    fn encryption_matches_the_official_vector() {
        // Re-encrypting the vector's plaintext with its own random prefix gives its echostr.
        let c = official();
        let mut raw = STANDARD.decode(ECHOSTR).unwrap();
        let dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(&c.key, &c.key[..16]).unwrap();
        let plain = dec.decrypt_padded::<NoPadding>(&mut raw).unwrap();
        let random: [u8; 16] = plain[..16].try_into().unwrap();
        assert_eq!(c.encrypt_with(random, "1616140317555161061"), ECHOSTR);
    }

    #[test]
    fn tampered_ciphertext_is_rejected() {
        let c = official();
        let mut raw = STANDARD.decode(ECHOSTR).unwrap();
        let n = raw.len();
        // Flipping a bit of the last block garbles the padding.
        raw[n - 1] ^= 0x01;
        assert_eq!(c.decrypt(&STANDARD.encode(&raw)), Err(CryptoError::Padding));
        // Flipping a bit of the IV-chained block before it changes the receive id.
        let mut raw = STANDARD.decode(ECHOSTR).unwrap();
        raw[n - 17 - 8] ^= 0x01;
        assert!(c.decrypt(&STANDARD.encode(&raw)).is_err());
        // Not whole blocks, not base64, empty.
        assert_eq!(
            c.decrypt(&STANDARD.encode(&raw[..n - 3])),
            Err(CryptoError::Length)
        );
        assert_eq!(c.decrypt("***"), Err(CryptoError::NotBase64));
        assert_eq!(c.decrypt(""), Err(CryptoError::Length));
        // And the signature, which covers the ciphertext, no longer matches.
        let tampered = STANDARD.encode(&raw);
        assert_eq!(
            c.verify(SIGNATURE, TIMESTAMP, NONCE, &tampered),
            Err(CryptoError::Signature)
        );
    }

    #[test]
    fn wrong_receive_id_is_rejected() {
        let other = Crypto::new(TOKEN, AES_KEY, "ww0000000000000000").unwrap();
        match other.decrypt(ECHOSTR) {
            Err(CryptoError::Receiver { got, expected }) => {
                assert_eq!(got, CORP);
                assert_eq!(expected, "ww0000000000000000");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_signature_token_or_values_are_rejected() {
        let c = official();
        let bad = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4";
        assert_eq!(
            c.verify(bad, TIMESTAMP, NONCE, ECHOSTR),
            Err(CryptoError::Signature)
        );
        assert_eq!(
            c.verify(SIGNATURE, "1409659590", NONCE, ECHOSTR),
            Err(CryptoError::Signature)
        );
        assert_eq!(
            c.verify(SIGNATURE, TIMESTAMP, "263014781", ECHOSTR),
            Err(CryptoError::Signature)
        );
        let wrong_token = Crypto::new("QDG6eL", AES_KEY, CORP).unwrap();
        assert_eq!(
            wrong_token.verify(SIGNATURE, TIMESTAMP, NONCE, ECHOSTR),
            Err(CryptoError::Signature)
        );
        assert_eq!(
            c.verify("", TIMESTAMP, NONCE, ECHOSTR),
            Err(CryptoError::Signature)
        );
    }

    #[test]
    fn bad_padding_values_are_rejected() {
        assert_eq!(unpad(&[1, 2, 0]), Err(CryptoError::Padding));
        assert_eq!(unpad(&[33; 64]), Err(CryptoError::Padding));
        assert_eq!(unpad(&[1, 3, 2, 3]), Err(CryptoError::Padding));
        assert_eq!(unpad(&[32; 32]).unwrap(), &[] as &[u8]);
        assert_eq!(unpad(&[9, 2, 2]).unwrap(), &[9]);
    }

    #[test]
    fn bad_keys_are_clear_errors() {
        assert_eq!(
            Crypto::new(TOKEN, "short", CORP).unwrap_err(),
            CryptoError::Key(AesKeyError::Length(5))
        );
        let e = Crypto::new(TOKEN, &"*".repeat(43), CORP).unwrap_err();
        assert!(
            matches!(e, CryptoError::Key(AesKeyError::Encoding(_))),
            "{e}"
        );
    }
}
