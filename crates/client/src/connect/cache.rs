//! Where `mcpgate connect` keeps what a login produced: tokens and client
//! registrations, per MCP server, each bound to the issuer that issued it.
//!
//! One file per server (`<sha256(server URL)>.sealed`), AES-256-GCM under a
//! cache key with the server URL as associated data, so a file copied to
//! another server's name does not decrypt. The directory is mode 0700. The
//! cache key lives in the OS keyring when one answers, else in a `0600` key
//! file in the directory (see [`super::keystore`]).
//!
//! Several `connect` processes for one server share a login through an
//! exclusive lock on `<hash>.lock` (`std::fs::File::lock`, advisory, released
//! when the process dies): whoever holds it runs the flow, the others wait,
//! then read what it stored.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcpgate_crypto::master::MasterKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::ConnectError;
pub use super::keystore::{KeyHome, KeyringUse};
/// How often a waiting process retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// A client registration at one authorization server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registration {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub auth_method: String,
    /// The redirect URI it was registered with (its port is reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

/// Tokens from one authorization server for one resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tokens {
    pub issuer: String,
    pub client_id: String,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The scopes asked for (what a step-up adds to).
    #[serde(default)]
    pub requested_scope: Option<String>,
    /// The scopes granted, when the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Tokens {
    /// Expired, or expiring within `margin`.
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at
            .is_some_and(|at| at <= now_secs().saturating_add(margin.as_secs()))
    }
}

/// Everything kept for one MCP server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Registrations by issuer: a client id is only ever used at the
    /// authorization server that issued it.
    #[serde(default)]
    pub registrations: BTreeMap<String, Registration>,
    #[serde(default)]
    pub tokens: Option<Tokens>,
}

/// The cache directory and its key.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    key: MasterKey,
    home: KeyHome,
}

/// Holds a server's login lock until dropped.
#[derive(Debug)]
pub struct LoginLock {
    _file: File,
}

impl Cache {
    /// Opens (creating it, mode 0700) the cache directory: `dir`, else
    /// `$MCPGATE_CONNECT_DIR`, else `$XDG_CONFIG_HOME/mcpgate/connect`,
    /// else `~/.config/mcpgate/connect`.
    pub fn open(dir: Option<PathBuf>, keyring: KeyringUse) -> Result<Self, ConnectError> {
        let dir = match dir {
            Some(d) => d,
            None => default_dir().ok_or_else(|| {
                ConnectError::Cache(
                    "no cache directory: set HOME, XDG_CONFIG_HOME or pass --cache-dir".into(),
                )
            })?,
        };
        create_private_dir(&dir)?;
        // Two processes starting together must not both create a key.
        let lock_path = dir.join("cache.key.lock");
        let lock = private_file_options()
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| ConnectError::Cache(format!("{}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| ConnectError::Cache(format!("{}: {e}", lock_path.display())))?;
        let (key, home) = super::keystore::cache_key(&dir, keyring)?;
        drop(lock);
        Ok(Self { dir, key, home })
    }

    /// Where the cache key is kept.
    pub fn key_home(&self) -> KeyHome {
        self.home
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stem(server: &str) -> String {
        let digest = mcpgate_crypto::sha256(server.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{}.sealed", Self::stem(server)))
    }

    /// What is kept for `server` (empty when nothing is, or when the file
    /// does not decrypt: a login replaces it).
    pub fn load(&self, server: &str) -> Entry {
        let Ok(sealed) = std::fs::read(self.path(server)) else {
            return Entry::default();
        };
        let Ok(plain) = self.key.open(server.as_bytes(), &sealed) else {
            eprintln!(
                "mcpgate connect: the token cache for {server} does not decrypt under the cache \
                 key; ignoring it"
            );
            return Entry::default();
        };
        serde_json::from_slice(&plain).unwrap_or_default()
    }

    /// Replaces what is kept for `server` (written to a temporary file,
    /// synced, then renamed over the old one).
    pub fn store(&self, server: &str, entry: &Entry) -> Result<(), ConnectError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(entry).map_err(|e| ConnectError::Cache(e.to_string()))?,
        );
        let sealed = self
            .key
            .seal(server.as_bytes(), &plain)
            .map_err(|e| ConnectError::Cache(e.to_string()))?;
        let path = self.path(server);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = private_file_options().open(&tmp)?;
            f.write_all(&sealed)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ConnectError::Cache(format!("cannot write {}: {e}", path.display()))
        })
    }

    /// Forgets everything kept for `server`. True when something was.
    pub fn remove(&self, server: &str) -> Result<bool, ConnectError> {
        match std::fs::remove_file(self.path(server)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ConnectError::Cache(e.to_string())),
        }
    }

    /// Takes the login lock for `server`, waiting up to `wait` for another
    /// process to release it.
    pub async fn lock(&self, server: &str, wait: Duration) -> Result<LoginLock, ConnectError> {
        let path = self.dir.join(format!("{}.lock", Self::stem(server)));
        let file = private_file_options()
            .truncate(false)
            .open(&path)
            .map_err(|e| ConnectError::Cache(format!("cannot open {}: {e}", path.display())))?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(LoginLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !told {
                        eprintln!(
                            "mcpgate connect: another mcpgate connect is logging in to this server; waiting for it"
                        );
                        told = true;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ConnectError::Cache(format!(
                            "another mcpgate connect held the login lock ({}) for longer than {} s",
                            path.display(),
                            wait.as_secs()
                        )));
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(ConnectError::Cache(format!(
                        "cannot lock {}: {e}",
                        path.display()
                    )));
                }
            }
        }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MCPGATE_CONNECT_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("mcpgate").join("connect"))
}

fn create_private_dir(dir: &Path) -> Result<(), ConnectError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| ConnectError::Cache(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)
            .map_err(|e| ConnectError::Cache(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(ConnectError::Cache(format!(
                "{} is open to group or others (mode {:o}); run `chmod 700` on it",
                dir.display(),
                mode & 0o777
            )));
        }
    }
    Ok(())
}

/// Write, create, truncate; mode 0600 where modes exist.
pub(super) fn private_file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(access: &str) -> Tokens {
        Tokens {
            issuer: "https://as.example".into(),
            client_id: "c1".into(),
            access_token: access.into(),
            refresh_token: Some("r1".into()),
            expires_at: Some(now_secs() + 600),
            requested_scope: Some("mcp".into()),
            scope: None,
        }
    }

    #[test]
    fn round_trip_is_sealed_and_bound_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(dir.path().join("c")), KeyringUse::Off).unwrap();
        let entry = Entry {
            tokens: Some(tokens("secret-access-token")),
            ..Entry::default()
        };
        cache.store("https://a.example/mcp", &entry).unwrap();
        assert_eq!(cache.load("https://a.example/mcp"), entry);
        // Nothing readable on disk.
        let raw = std::fs::read(cache.path("https://a.example/mcp")).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("secret-access-token"));
        // Moved to another server's name, it does not decrypt.
        std::fs::copy(
            cache.path("https://a.example/mcp"),
            cache.path("https://b.example/mcp"),
        )
        .unwrap();
        assert_eq!(cache.load("https://b.example/mcp"), Entry::default());
        assert!(cache.remove("https://a.example/mcp").unwrap());
        assert_eq!(cache.load("https://a.example/mcp"), Entry::default());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(dir.path().join("c")), KeyringUse::Off).unwrap();
        cache.store("s", &Entry::default()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cache.dir()), 0o700);
        assert_eq!(mode(&cache.dir().join("cache.key")), 0o600);
        assert_eq!(cache.key_home(), KeyHome::File);
        assert_eq!(mode(&cache.path("s")), 0o600);
    }

    #[tokio::test]
    async fn login_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(dir.path().join("c")), KeyringUse::Off).unwrap();
        let held = cache.lock("s", Duration::from_secs(1)).await.unwrap();
        // A second holder (a separate open file description, as another
        // process would have) times out while the first holds it.
        let err = cache
            .lock("s", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("login lock"), "{err}");
        drop(held);
        cache.lock("s", Duration::from_secs(1)).await.unwrap();
    }

    #[test]
    fn expiry_margin() {
        let mut t = tokens("a");
        t.expires_at = Some(now_secs() + 20);
        assert!(t.expires_within(Duration::from_secs(30)));
        assert!(!t.expires_within(Duration::from_secs(5)));
        t.expires_at = None;
        assert!(!t.expires_within(Duration::from_secs(30)));
    }
}
