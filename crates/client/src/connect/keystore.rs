//! Where the token cache's key lives: the OS keyring when one answers (the
//! macOS Keychain, the Windows Credential Manager, a Secret Service such as
//! GNOME Keyring or KWallet on Linux), else a `0600` key file in the cache
//! directory. With the key in the keyring, the cache files alone decrypt
//! nothing: reading them needs the user's unlocked keyring too.
//!
//! Keyring calls run on a thread of their own, bounded by [`KEYRING_WAIT`]
//! (a locked keyring may prompt, a dead D-Bus may hang), and never inside
//! the async runtime (the Secret Service client blocks on its own).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpgate_crypto::master::MasterKey;
use zeroize::Zeroizing;

use super::error::ConnectError;

const KEY_FILE: &str = "cache.key";
/// Marks a cache directory whose key is in the keyring, so that a keyring
/// that stops answering is reported instead of silently replaced.
const IN_KEYRING: &str = "cache.key.in-keyring";
const SERVICE: &str = "mcpgate-connect";
const KEYRING_WAIT: Duration = Duration::from_secs(10);

/// Whether to use the OS keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringUse {
    /// The keyring when it answers, else the key file.
    Auto,
    /// The key file only.
    Off,
}

/// Where the key was found or put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHome {
    Keyring,
    File,
}

/// The cache key for `dir`, from (or created in) the keyring or the key
/// file. The caller holds the directory's key lock.
pub fn cache_key(dir: &Path, mode: KeyringUse) -> Result<(MasterKey, KeyHome), ConnectError> {
    let file = dir.join(KEY_FILE);
    let marker = dir.join(IN_KEYRING);
    if file.exists() || mode == KeyringUse::Off {
        return file_key(&file);
    }
    let account = account(dir);
    match keyring_get(&account) {
        Ok(Some(k)) => return Ok((k, KeyHome::Keyring)),
        Ok(None) => {}
        Err(e) if marker.exists() => {
            return Err(ConnectError::Cache(format!(
                "the cache key of {} is in the OS keyring, which does not answer ({e}); \
                 unlock it, or run with --keyring off to start a new cache",
                dir.display()
            )));
        }
        Err(e) => {
            eprintln!(
                "mcpgate connect: no OS keyring reachable ({e}); keeping the token cache key \
                 in {} (mode 0600)",
                file.display()
            );
            return file_key(&file);
        }
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    mcpgate_crypto::random_bytes(bytes.as_mut())
        .map_err(|_| ConnectError::Cache("the system random generator failed".into()))?;
    let encoded = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    match keyring_set(&account, encoded.to_string()) {
        Ok(()) => {
            super::cache::private_file_options()
                .open(&marker)
                .map_err(|e| ConnectError::Cache(format!("{}: {e}", marker.display())))?;
            let key = MasterKey::from_bytes(bytes.as_ref())
                .map_err(|e| ConnectError::Cache(e.to_string()))?;
            Ok((key, KeyHome::Keyring))
        }
        Err(e) => {
            eprintln!(
                "mcpgate connect: the OS keyring refused the cache key ({e}); keeping it in {} \
                 (mode 0600)",
                file.display()
            );
            file_key(&file)
        }
    }
}

fn file_key(path: &Path) -> Result<(MasterKey, KeyHome), ConnectError> {
    MasterKey::load_or_create_file(path)
        .map(|k| (k, KeyHome::File))
        .map_err(|e| ConnectError::Cache(e.to_string()))
}

/// The keyring account of a cache directory: one key per directory, so
/// that separate caches (tests, profiles) never share a key.
fn account(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let digest = mcpgate_crypto::sha256(canonical.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("cache-key-{hex}")
}

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
fn keyring_entry(account: &str) -> keyring::Result<keyring::Entry> {
    keyring::Entry::new(SERVICE, account)
}

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
fn keyring_get(account: &str) -> Result<Option<MasterKey>, String> {
    let account = account.to_owned();
    let got = on_thread(move || keyring_entry(&account)?.get_password().map(Zeroizing::new))?;
    match got {
        Ok(v) => MasterKey::from_env_value(&v)
            .map(Some)
            .map_err(|_| "the keyring's cache key is not 32 bytes of base64url".to_owned()),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
fn keyring_set(account: &str, value: String) -> Result<(), String> {
    let account = account.to_owned();
    let value = Zeroizing::new(value);
    on_thread(move || keyring_entry(&account)?.set_password(&value))?.map_err(|e| e.to_string())
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn keyring_get(_: &str) -> Result<Option<MasterKey>, String> {
    Err("no OS keyring support on this platform".into())
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn keyring_set(_: &str, _: String) -> Result<(), String> {
    Err("no OS keyring support on this platform".into())
}

/// Runs `f` on a new thread, waiting at most [`KEYRING_WAIT`].
fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| e.to_string())?;
    rx.recv_timeout(KEYRING_WAIT)
        .map_err(|_| format!("no answer within {} s", KEYRING_WAIT.as_secs()))
}
