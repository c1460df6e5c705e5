//! The master key: encrypts what must be stored but must not be readable
//! from storage alone (the authorization server's private signing keys).
//!
//! AES-256-GCM with a random 96-bit nonce per message; the associated data
//! binds a ciphertext to its row (tenant and key id), so a ciphertext copied
//! to another row does not decrypt. The key comes from `MCPGATE_MASTER_KEY`
//! (base64url of 32 bytes) or from a key file created with mode 0600 on
//! first start.

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
/// Format marker of sealed data (lets the format evolve).
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    #[error("MCPGATE_MASTER_KEY must be base64url of exactly 32 bytes")]
    BadEnvKey,
    #[error("master key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the system random number generator failed")]
    Random,
    #[error(
        "sealed data does not decrypt under this master key (wrong key, or data altered or moved)"
    )]
    Open,
}

pub struct MasterKey {
    key: LessSafeKey,
    /// For [`MasterKey::derive_mac`]: HMAC keyed with the master key.
    mac: crate::mac::Mac,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MasterKeyError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| MasterKeyError::BadEnvKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            mac: crate::mac::Mac::from_key(bytes),
        })
    }

    /// From the value of `MCPGATE_MASTER_KEY`.
    pub fn from_env_value(v: &str) -> Result<Self, MasterKeyError> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim().trim_end_matches('='))
                .map_err(|_| MasterKeyError::BadEnvKey)?,
        );
        if bytes.len() != KEY_LEN {
            return Err(MasterKeyError::BadEnvKey);
        }
        Self::from_bytes(&bytes)
    }

    /// Reads the key file, creating it (mode 0600, 32 random bytes as
    /// base64url) if it does not exist. A file readable by others is
    /// refused.
    pub fn load_or_create_file(path: &Path) -> Result<Self, MasterKeyError> {
        let err = |reason: String| MasterKeyError::File {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    let mode = std::fs::metadata(path)
                        .map_err(|e| err(e.to_string()))?
                        .permissions()
                        .mode();
                    if mode & 0o077 != 0 {
                        return Err(err(format!(
                            "is readable by group or others (mode {:o}); run `chmod 600` on it",
                            mode & 0o777
                        )));
                    }
                }
                let text = Zeroizing::new(text);
                Self::from_env_value(&text).map_err(|_| err("is not base64url of 32 bytes".into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
                crate::random_bytes(bytes.as_mut()).map_err(|_| MasterKeyError::Random)?;
                let text = Zeroizing::new(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
                );
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
                f.write_all(text.as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                Self::from_bytes(bytes.as_ref())
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// A MAC key for `label`, derived from the master key (HMAC-SHA-256 of
    /// the label), so that replicas sharing the master key share it too and
    /// nothing more needs storing. Distinct labels give unrelated keys.
    pub fn derive_mac(&self, label: &str) -> crate::mac::Mac {
        self.mac.derive(label)
    }

    /// Encrypts `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::random_bytes(&mut nonce).map_err(|_| MasterKeyError::Random)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| MasterKeyError::Random)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        buf.iter_mut().for_each(|b| *b = 0);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(MasterKeyError::Open);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .map_err(|_| MasterKeyError::Open)?;
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| MasterKeyError::Open)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes(&[7u8; 32]).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let k = key();
        let s = k.seal(b"default/kid-1", b"private key").unwrap();
        assert!(!s.windows(11).any(|w| w == b"private key"));
        assert_eq!(&k.open(b"default/kid-1", &s).unwrap()[..], b"private key");
        assert!(
            k.open(b"default/kid-2", &s).is_err(),
            "moved to another row"
        );
        let mut t = s.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(k.open(b"default/kid-1", &t).is_err(), "altered");
        assert!(
            MasterKey::from_bytes(&[8u8; 32])
                .unwrap()
                .open(b"default/kid-1", &s)
                .is_err()
        );
    }

    #[test]
    fn key_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let a = MasterKey::load_or_create_file(&p).unwrap();
        let sealed = a.seal(b"x", b"y").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let b = MasterKey::load_or_create_file(&p).unwrap();
        assert_eq!(&b.open(b"x", &sealed).unwrap()[..], b"y");
    }

    #[test]
    fn world_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        MasterKey::load_or_create_file(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterKey::load_or_create_file(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn env_key_must_be_32_bytes() {
        assert!(MasterKey::from_env_value("c2hvcnQ").is_err());
        let ok = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 32]);
        assert!(MasterKey::from_env_value(&ok).is_ok());
    }
}
