//! The master key file and the purpose keys derived from it with HKDF.

use std::fs;
use std::io::Write;
use std::path::Path;

use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use super::CryptoError;

/// Length of the master key and of every derived key.
pub const KEY_LEN: usize = 32;

/// The one secret every stored byte depends on.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Parses the key file format: 64 hex digits, surrounding white space ignored.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let raw = hex::decode(text.trim()).map_err(|_| CryptoError::BadKeyFile)?;
        let bytes: [u8; KEY_LEN] = raw.try_into().map_err(|_| CryptoError::BadKeyFile)?;
        Ok(Self(bytes))
    }

    /// Reads the key at `path`, or creates it (mode 0600) when it does not exist.
    /// Returns the key and whether it was created now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(path, format!("{}\n", hex::encode(key.0)).as_bytes())?;
                Ok((key, true))
            }
            Err(e) => Err(CryptoError::KeyFile(e)),
        }
    }

    /// Derives the purpose keys.
    pub fn derive(&self) -> Keys {
        let hk = Hkdf::<Sha256>::new(Some(b"dedupdav key derivation v1"), &self.0);
        let expand = |info: &[u8]| {
            let mut out = [0u8; KEY_LEN];
            // A 32-byte output is always within HKDF-SHA256's limit.
            hk.expand(info, &mut out).map(|_| out).unwrap_or(out)
        };
        let id = expand(b"key id");
        let mut gear = [0u64; 256];
        let mut raw = [0u8; 256 * 8];
        // 2048 bytes is below HKDF-SHA256's limit of 255 * 32 bytes.
        let _ = hk.expand(b"chunker gear table", &mut raw);
        for (i, g) in gear.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
            *g = u64::from_le_bytes(b);
        }
        Keys {
            key_id: u32::from_le_bytes([id[0], id[1], id[2], id[3]]),
            chunk_id: expand(b"chunk id"),
            object_name: expand(b"object name"),
            object_seal: expand(b"object encryption"),
            metadata: expand(b"metadata backup"),
            auth_cache: expand(b"auth cache"),
            app_password: expand(b"app password"),
            visible_file_id: expand(b"visible file id"),
            visible_etag: expand(b"visible etag"),
            gear: Box::new(gear),
        }
    }
}

/// Writes a new private file (mode 0600) so that a crash leaves either no
/// file or the whole one: a temporary file, fsynced, renamed into place,
/// then the directory fsynced so the new name itself is durable.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(CryptoError::KeyFile)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(CryptoError::KeyFile)?;
    f.write_all(bytes).map_err(CryptoError::KeyFile)?;
    f.sync_all().map_err(CryptoError::KeyFile)?;
    // A key file that appeared meanwhile is kept, never overwritten.
    fs::hard_link(&tmp, path).map_err(CryptoError::KeyFile)?;
    let _ = fs::remove_file(&tmp);
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(CryptoError::KeyFile)?;
    Ok(())
}

/// Purpose keys, each derived from the master key and used for one thing only.
pub struct Keys {
    /// Identifies the master key in object headers (for later rotation).
    pub key_id: u32,
    /// HMAC key of chunk ids.
    pub chunk_id: [u8; KEY_LEN],
    /// HMAC key of object names.
    pub object_name: [u8; KEY_LEN],
    /// AES-256-GCM-SIV key of sealed objects.
    pub object_seal: [u8; KEY_LEN],
    /// Key of sealed metadata backups.
    pub metadata: [u8; KEY_LEN],
    /// HMAC key of the in-memory credential cache.
    pub auth_cache: [u8; KEY_LEN],
    /// HMAC key of the app-password verifiers stored in the index
    /// (`accounts/app_passwords.rs`).
    pub app_password: [u8; KEY_LEN],
    /// Round key of the permutation that turns node ids into the file ids
    /// clients see (`visible_ids.rs`).
    pub visible_file_id: [u8; KEY_LEN],
    /// MAC key of the etags clients see (`visible_ids.rs`).
    pub visible_etag: [u8; KEY_LEN],
    /// The content-defined chunker's gear table.
    pub gear: Box<[u64; 256]>,
}

impl Keys {
    /// The chunk-id key of one user's uploads when deduplication is
    /// confined to each user: HKDF from the chunk-id key and the user id,
    /// so the same content gets a different id (and object) per user.
    pub fn user_chunk_id(&self, user: u64) -> [u8; KEY_LEN] {
        let hk = Hkdf::<Sha256>::new(Some(b"dedupdav per-user chunk id v1"), &self.chunk_id);
        let mut out = [0u8; KEY_LEN];
        // A 32-byte output is always within HKDF-SHA256's limit.
        let _ = hk.expand(&user.to_le_bytes(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/master.key");
        let (k1, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.0, k2.0);
    }

    #[test]
    fn purposes_get_different_keys() {
        let keys = MasterKey::from_bytes([7; 32]).derive();
        assert_ne!(keys.chunk_id, keys.object_name);
        assert_ne!(keys.object_seal, keys.chunk_id);
        assert_ne!(keys.gear[0], keys.gear[1]);
        assert_ne!(keys.visible_file_id, keys.visible_etag);
        assert_ne!(keys.visible_etag, keys.auth_cache);
        assert_ne!(keys.app_password, keys.auth_cache);
    }

    #[test]
    fn each_user_gets_its_own_chunk_id_key() {
        let keys = MasterKey::from_bytes([7; 32]).derive();
        assert_ne!(keys.user_chunk_id(1), keys.user_chunk_id(2));
        assert_ne!(keys.user_chunk_id(1), keys.chunk_id);
        assert_eq!(keys.user_chunk_id(1), keys.user_chunk_id(1));
    }

    #[test]
    fn bad_key_file_is_refused() {
        assert!(MasterKey::parse("abc").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
    }
}
