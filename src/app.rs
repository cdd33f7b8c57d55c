//! Wiring: builds the gateway's parts (key, index, backend, content store,
//! file system) from the configuration. Every subcommand starts here.

use std::sync::Arc;

use crate::backend::cache::{CacheError, CachedStore};
use crate::backend::webdav::WebDavStore;
use crate::backend::BackendError;
use crate::config::{BackendConfig, Config};
use crate::crypto::{CryptoError, Keys, MasterKey, VisibleIds};
use crate::meta::IndexError;
use crate::meta::Meta;
use crate::store::ContentStore;
use crate::webdav::DedupFs;

/// Errors of starting up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] CryptoError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("object backend: {0}")]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The assembled gateway.
pub struct App {
    pub config: Config,
    pub keys: Arc<Keys>,
    pub meta: Meta,
    pub store: Arc<ContentStore>,
    pub fs: DedupFs,
}

impl App {
    /// Opens everything. A new master key is generated on first start and
    /// announced loudly: without it no stored byte can be read.
    pub fn open(config: Config) -> Result<Self, StartError> {
        create_private_dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let master = load_master_key(&config)?;
        let keys = Arc::new(master.derive());
        let meta = Meta::open_redb(&config.index_path(), config.prop_limits())?;
        make_private(&config.index_path()).map_err(|source| StartError::DataDir {
            path: config.index_path().display().to_string(),
            source,
        })?;
        let mut backend = crate::backend::open(&config.backend, &config.data_dir)?;
        if let Some(cache) = config.cache.settings() {
            backend = Arc::new(CachedStore::open(backend, &cache)?);
        }
        let store = ContentStore::new(keys.clone(), backend, meta.clone(), config.store_settings());
        let ids = VisibleIds::new(&keys, meta.instance_id());
        let fs = DedupFs::new(
            meta.clone(),
            store.clone(),
            config.upload_checksums()?,
            Arc::new(ids),
        );
        Ok(Self {
            config,
            keys,
            meta,
            store,
            fs,
        })
    }
}

/// Creates the data directory readable by the gateway's user only (0700):
/// it holds the index (every user's names and password hashes) and, by
/// default, the master key. An existing directory keeps its mode; the admin
/// may have chosen it.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Makes a file readable and writable by the gateway's user only.
fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn load_master_key(config: &Config) -> Result<MasterKey, StartError> {
    if let Some(hex) = &config.master_key {
        return Ok(MasterKey::parse(hex)?);
    }
    let path = config.key_path();
    let (key, created) = MasterKey::load_or_create(&path)?;
    if created {
        let shown = std::fs::canonicalize(&path).unwrap_or(path);
        eprintln!(
            "\n*** A new master key was written to {} (mode 0600).\n\
             *** Every stored byte is encrypted under it: if it is lost, ALL DATA IS LOST.\n\
             *** Back it up now, somewhere other than this machine.\n",
            shown.display()
        );
        tracing::warn!(path = %shown.display(), "generated a new master key; back it up");
    }
    Ok(key)
}

/// The keys, with the master key created (and announced) if there is none
/// yet, as `serve` would: user administration before the first start needs
/// them for app passwords.
pub fn keys(config: &Config) -> Result<Arc<Keys>, StartError> {
    create_private_dir(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    Ok(Arc::new(load_master_key(config)?.derive()))
}

/// The keys of an existing installation, for commands that must read
/// what is sealed (`restore`): never makes up a new master key.
pub fn existing_keys(config: &Config) -> Result<Arc<Keys>, StartError> {
    if config.master_key.is_none() && !config.key_path().exists() {
        return Err(StartError::Unsupported(format!(
            "no master key at {} (and none configured): it is needed to read what is sealed upstream; put the backed-up key there",
            config.key_path().display()
        )));
    }
    Ok(Arc::new(load_master_key(config)?.derive()))
}

/// The upstream WebDAV store the configuration names.
pub fn open_webdav(config: &Config) -> Result<WebDavStore, StartError> {
    let BackendConfig::Webdav(upstream) = &config.backend else {
        let kind = config.backend.kind();
        return Err(StartError::Unsupported(format!(
            "backend.kind is \"{kind}\": there is no upstream"
        )));
    };
    WebDavStore::new(upstream).map_err(|e| StartError::Backend(e.into()))
}
