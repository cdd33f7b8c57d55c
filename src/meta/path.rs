//! Turning request paths into validated name segments.

use super::NsError;

/// A path inside one user's tree, as validated name segments.
pub type NamePath = Vec<String>;

/// Longest accepted name, in bytes (what common file systems allow).
const MAX_NAME: usize = 255;

/// Splits a decoded path ("/a/b/c/") into names. Rejects `.` and `..`,
/// NUL, backslash-free is not required, invalid UTF-8 and over-long names,
/// so no path can ever leave the user's tree.
pub fn split_path(bytes: &[u8]) -> Result<NamePath, NsError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| NsError::BadName("names must be valid UTF-8".into()))?;
    let mut out = Vec::new();
    for seg in text.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg == "." || seg == ".." {
            return Err(NsError::BadName(format!("{seg:?} is not allowed")));
        }
        if seg.len() > MAX_NAME {
            return Err(NsError::BadName("name longer than 255 bytes".into()));
        }
        if seg.contains('\0') {
            return Err(NsError::BadName("name contains NUL".into()));
        }
        out.push(seg.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rejects() {
        assert_eq!(split_path(b"/a/b c/").unwrap(), vec!["a", "b c"]);
        assert!(split_path(b"/").unwrap().is_empty());
        assert!(split_path(b"/a/../b").is_err());
        assert!(split_path(b"/a/./b").is_err());
        assert!(split_path(b"/a\0b").is_err());
        assert!(split_path(&[b'/', 0xff]).is_err());
        assert!(split_path("/x y/z".as_bytes()).is_ok());
        assert!(split_path(format!("/{}", "y".repeat(256)).as_bytes()).is_err());
    }
}
