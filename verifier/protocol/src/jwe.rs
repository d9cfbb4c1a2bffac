//! Compact JWE (RFC 7516) with one algorithm pair: key agreement
//! `ECDH-ES+A256KW` (RFC 7518 §4.6: ephemeral-static ECDH on P-256, the
//! Concat KDF, AES-256 key wrap) and content encryption `A256GCM`. It is how
//! the verifier releases a secret to the encryption key an agent's evidence
//! binds, and how the agent opens it; any JOSE library opens it too.
//!
//! The protected header is the only header (compact serialization): `alg`,
//! `enc`, `epk` (the sender's ephemeral P-256 key), `kid` (the recipient
//! key's RFC 7638 thumbprint) and whatever the caller adds (the verifier
//! adds the secret's name and version). The header is the GCM additional
//! data, so none of it can be edited. Opening refuses every other algorithm,
//! `zip`, any `crit`, a point off the curve and wrong lengths, and never
//! panics on any input.

use attest_gate_core::AgentKey;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::key_wrap::{KeyEncryptionKey, KeyWrap, AES_256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// The key-agreement algorithm (`alg`).
pub const ALG: &str = "ECDH-ES+A256KW";
/// The content-encryption algorithm (`enc`).
pub const ENC: &str = "A256GCM";
/// The longest compact JWE opened: a 64 KiB secret in base64url with its
/// header fits with room to spare.
pub const MAX_JWE_LEN: usize = 128 * 1024;

const CEK_LEN: usize = 32;
const WRAPPED_LEN: usize = CEK_LEN + 8;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const COORDINATE_LEN: usize = 32;

/// A JWE that cannot be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// Not five base64url parts, a header that is not a JSON object, a
    /// missing member or a wrong length.
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    /// An algorithm, curve or header feature this module does not do.
    #[error("unsupported JWE: {0}")]
    Unsupported(&'static str),
    /// The key agreement, unwrap or decryption failed: the JWE is not for
    /// this key, or was edited.
    #[error("the JWE does not open with this key (wrong key or edited)")]
    Decrypt,
    /// The random generator or a cipher failed while encrypting.
    #[error("JWE encryption failed")]
    Encrypt,
}

/// An opened JWE: its protected header and the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The protected header, as signed by GCM.
    pub header: Map<String, Value>,
    /// The content.
    pub plaintext: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(part: &str, what: &'static str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JweError::Malformed(what))
}

/// The recipient's public point (SEC1 uncompressed): P-256 only.
fn recipient_point(key: &AgentKey) -> Result<Vec<u8>, JweError> {
    match key {
        AgentKey::P256 { .. } => Ok(key.raw_public_key()),
        _ => Err(JweError::Unsupported("the recipient key must be EC P-256")),
    }
}

/// RFC 7518 §4.6.2: the Concat KDF (NIST SP 800-56A) with SHA-256, for a
/// 256-bit key-encryption key, so one round.
fn concat_kdf(z: &[u8], apu: &[u8], apv: &[u8]) -> [u8; 32] {
    let field = |ctx: &mut Context, data: &[u8]| {
        ctx.update(&(data.len() as u32).to_be_bytes());
        ctx.update(data);
    };
    let mut ctx = Context::new(&SHA256);
    ctx.update(&1u32.to_be_bytes());
    ctx.update(z);
    field(&mut ctx, ALG.as_bytes());
    field(&mut ctx, apu);
    field(&mut ctx, apv);
    ctx.update(&256u32.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Encrypts `plaintext` to `recipient` (a P-256 public key). `extra` adds
/// members to the protected header; it may not replace `alg`, `enc`, `epk`
/// or `kid`.
pub fn encrypt(
    recipient: &AgentKey,
    extra: &Map<String, Value>,
    plaintext: &[u8],
) -> Result<String, JweError> {
    let point = recipient_point(recipient)?;
    let rng = SystemRandom::new();
    let ephemeral =
        EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| JweError::Encrypt)?;
    let epk = ephemeral
        .compute_public_key()
        .map_err(|_| JweError::Encrypt)?;
    let epk = epk.as_ref();
    let (x, y) = match (epk.get(1..33), epk.get(33..65)) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(JweError::Encrypt),
    };
    let kek = agreement::agree_ephemeral(
        ephemeral,
        UnparsedPublicKey::new(&ECDH_P256, &point),
        JweError::Decrypt,
        |z| Ok(concat_kdf(z, &[], &[])),
    )?;

    let mut header = extra.clone();
    for reserved in ["alg", "enc", "epk", "kid", "zip", "crit"] {
        header.remove(reserved);
    }
    header.insert("alg".into(), json!(ALG));
    header.insert("enc".into(), json!(ENC));
    header.insert(
        "epk".into(),
        json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}),
    );
    header.insert("kid".into(), json!(recipient.jkt()));
    let protected = b64(Value::Object(header).to_string().as_bytes());

    let mut cek = [0u8; CEK_LEN];
    let mut iv = [0u8; IV_LEN];
    rng.fill(&mut cek).map_err(|_| JweError::Encrypt)?;
    rng.fill(&mut iv).map_err(|_| JweError::Encrypt)?;
    let mut wrapped = [0u8; WRAPPED_LEN];
    KeyEncryptionKey::new(&AES_256, &kek)
        .and_then(|k| k.wrap(&cek, &mut wrapped).map(|_| ()))
        .map_err(|_| JweError::Encrypt)?;
    let key = UnboundKey::new(&AES_256_GCM, &cek)
        .map(LessSafeKey::new)
        .map_err(|_| JweError::Encrypt)?;
    let mut ciphertext = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| JweError::Encrypt)?;
    Ok(format!(
        "{protected}.{}.{}.{}.{}",
        b64(&wrapped),
        b64(&iv),
        b64(&ciphertext),
        b64(tag.as_ref())
    ))
}

/// A header member that must be a string.
fn text<'a>(header: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    header.get(name).and_then(Value::as_str)
}

/// The sender's ephemeral key from `epk`, as a SEC1 point.
fn ephemeral_point(header: &Map<String, Value>) -> Result<Vec<u8>, JweError> {
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or(JweError::Malformed("no `epk` object"))?;
    if text(epk, "kty") != Some("EC") || text(epk, "crv") != Some("P-256") || epk.contains_key("d")
    {
        return Err(JweError::Unsupported("`epk` must be a public EC P-256 key"));
    }
    let coordinate = |name: &str| -> Result<Vec<u8>, JweError> {
        let bytes = unb64(
            text(epk, name).ok_or(JweError::Malformed("`epk` lacks a coordinate"))?,
            "`epk` coordinate is not base64url",
        )?;
        if bytes.len() == COORDINATE_LEN {
            Ok(bytes)
        } else {
            Err(JweError::Malformed("`epk` coordinate is not 32 bytes"))
        }
    };
    Ok([vec![0x04], coordinate("x")?, coordinate("y")?].concat())
}

/// Opens a compact JWE made for `key` (the recipient's ECDH P-256 key).
pub fn decrypt(key: &PrivateKey, compact: &str) -> Result<Opened, JweError> {
    if compact.len() > MAX_JWE_LEN {
        return Err(JweError::Malformed("longer than 128 KiB"));
    }
    let parts: Vec<&str> = compact.split('.').collect();
    let [protected, wrapped, iv, ciphertext, tag] = parts.as_slice() else {
        return Err(JweError::Malformed("not five dot-separated parts"));
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&unb64(protected, "the header is not base64url")?)
            .map_err(|_| JweError::Malformed("the header is not a JSON object"))?;
    if text(&header, "alg") != Some(ALG) || text(&header, "enc") != Some(ENC) {
        return Err(JweError::Unsupported(
            "only `ECDH-ES+A256KW` with `A256GCM`",
        ));
    }
    if header.contains_key("zip") || header.contains_key("crit") {
        return Err(JweError::Unsupported("`zip` and `crit` are not supported"));
    }
    let apu = match text(&header, "apu") {
        Some(a) => unb64(a, "`apu` is not base64url")?,
        None => Vec::new(),
    };
    let apv = match text(&header, "apv") {
        Some(a) => unb64(a, "`apv` is not base64url")?,
        None => Vec::new(),
    };
    let point = ephemeral_point(&header)?;
    let wrapped = unb64(wrapped, "the encrypted key is not base64url")?;
    let iv: [u8; IV_LEN] = unb64(iv, "the IV is not base64url")?
        .try_into()
        .map_err(|_| JweError::Malformed("the IV is not 12 bytes"))?;
    let mut sealed = unb64(ciphertext, "the ciphertext is not base64url")?;
    let tag = unb64(tag, "the tag is not base64url")?;
    if wrapped.len() != WRAPPED_LEN || tag.len() != TAG_LEN {
        return Err(JweError::Malformed(
            "the encrypted key must be 40 bytes and the tag 16",
        ));
    }

    let kek = agreement::agree(
        key,
        UnparsedPublicKey::new(&ECDH_P256, &point),
        JweError::Decrypt,
        |z| Ok(concat_kdf(z, &apu, &apv)),
    )?;
    let mut cek = [0u8; CEK_LEN];
    let unwrapped = KeyEncryptionKey::new(&AES_256, &kek)
        .and_then(|k| k.unwrap(&wrapped, &mut cek).map(|out| out.len()))
        .map_err(|_| JweError::Decrypt)?;
    if unwrapped != CEK_LEN {
        return Err(JweError::Decrypt);
    }
    let cipher = UnboundKey::new(&AES_256_GCM, &cek)
        .map(LessSafeKey::new)
        .map_err(|_| JweError::Decrypt)?;
    sealed.extend_from_slice(&tag);
    let plaintext = cipher
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| JweError::Decrypt)?
        .to_vec();
    Ok(Opened { header, plaintext })
}

/// The public half of an ECDH P-256 key as the [`AgentKey`] its JWK names.
pub fn public_key(key: &PrivateKey) -> Result<AgentKey, JweError> {
    let public = key.compute_public_key().map_err(|_| JweError::Encrypt)?;
    let point = public.as_ref();
    match (
        point.get(1..33).and_then(|c| c.try_into().ok()),
        point.get(33..65).and_then(|c| c.try_into().ok()),
    ) {
        (Some(x), Some(y)) => Ok(AgentKey::P256 { x, y }),
        _ => Err(JweError::Encrypt),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn recipient() -> (PrivateKey, AgentKey) {
        let key = PrivateKey::generate(&ECDH_P256).unwrap();
        let public = public_key(&key).unwrap();
        (key, public)
    }

    fn extra() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("secret".into(), json!("db-password"));
        m.insert("version".into(), json!(3));
        m.insert("alg".into(), json!("none"));
        m
    }

    #[test]
    fn what_is_encrypted_to_a_key_opens_with_it_and_names_it() {
        let (key, public) = recipient();
        let jwe = encrypt(&public, &extra(), b"s3cret").unwrap();
        let opened = decrypt(&key, &jwe).unwrap();
        assert_eq!(opened.plaintext, b"s3cret");
        assert_eq!(opened.header["secret"], "db-password");
        assert_eq!(opened.header["version"], 3);
        // The caller cannot replace the algorithm.
        assert_eq!(opened.header["alg"], ALG);
        assert_eq!(opened.header["kid"], public.jkt().as_str());
        // Empty and large contents too.
        for len in [0, 1, 65_536] {
            let plaintext = vec![7u8; len];
            let jwe = encrypt(&public, &Map::new(), &plaintext).unwrap();
            assert_eq!(decrypt(&key, &jwe).unwrap().plaintext, plaintext);
        }
    }

    #[test]
    fn another_key_cannot_open_it() {
        let (_, public) = recipient();
        let (other, _) = recipient();
        let jwe = encrypt(&public, &Map::new(), b"x").unwrap();
        assert_eq!(decrypt(&other, &jwe), Err(JweError::Decrypt));
    }

    #[test]
    fn no_edit_of_any_part_opens() {
        let (key, public) = recipient();
        let jwe = encrypt(&public, &extra(), b"s3cret").unwrap();
        let parts: Vec<&str> = jwe.split('.').collect();
        for i in 0..5 {
            let mut bytes = URL_SAFE_NO_PAD.decode(parts[i]).unwrap();
            for position in [0, bytes.len().saturating_sub(1)] {
                if bytes.is_empty() {
                    continue;
                }
                bytes[position] ^= 1;
                let mut edited: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
                edited[i] = URL_SAFE_NO_PAD.encode(&bytes);
                assert!(
                    decrypt(&key, &edited.join(".")).is_err(),
                    "part {i} byte {position}"
                );
                bytes[position] ^= 1;
            }
        }
    }

    #[test]
    fn other_algorithms_shapes_and_points_are_refused() {
        let (key, public) = recipient();
        let jwe = encrypt(&public, &Map::new(), b"x").unwrap();
        let parts: Vec<&str> = jwe.split('.').collect();
        let with_header = |edit: &dyn Fn(&mut Map<String, Value>)| {
            let mut header: Map<String, Value> =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            edit(&mut header);
            let mut edited: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
            edited[0] = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
            decrypt(&key, &edited.join("."))
        };
        for (name, value) in [
            ("alg", json!("ECDH-ES")),
            ("alg", json!("RSA-OAEP")),
            ("enc", json!("A128GCM")),
            ("zip", json!("DEF")),
            ("crit", json!(["exp"])),
        ] {
            assert!(matches!(
                with_header(&|h| {
                    h.insert(name.into(), value.clone());
                }),
                Err(JweError::Unsupported(_))
            ));
        }
        assert!(matches!(
            with_header(&|h| {
                h["epk"]["crv"] = json!("P-384");
            }),
            Err(JweError::Unsupported(_))
        ));
        // A point off the curve fails the agreement.
        assert_eq!(
            with_header(&|h| {
                h["epk"]["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
            }),
            Err(JweError::Decrypt)
        );
        assert!(matches!(
            with_header(&|h| {
                h.remove("epk");
            }),
            Err(JweError::Malformed(_))
        ));
        for bad in [
            "",
            "a.b.c.d",
            "a.b.c.d.e.f",
            "!!.b.c.d.e",
            &format!(
                "{}.{}.{}.{}.{}",
                parts[0], parts[1], "AAAA", parts[3], parts[4]
            ),
            &format!(
                "{}.{}.{}.{}.{}",
                parts[0], "AAAA", parts[2], parts[3], parts[4]
            ),
            &format!(
                "{}.{}.{}.{}.{}",
                parts[0], parts[1], parts[2], parts[3], "AAAA"
            ),
            &"a".repeat(MAX_JWE_LEN + 1),
        ] {
            assert!(matches!(decrypt(&key, bad), Err(JweError::Malformed(_))));
        }
        let p384 = AgentKey::P384 {
            x: [1; 48],
            y: [2; 48],
        };
        assert!(matches!(
            encrypt(&p384, &Map::new(), b"x"),
            Err(JweError::Unsupported(_))
        ));
    }
}
