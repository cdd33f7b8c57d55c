//! Use cases that need both the content store and the metadata, whatever
//! protocol asked for them: writing a file ([`put`]), checking the whole
//! installation ([`check`]), the names no write may create ([`refused`]). The protocol
//! adapters (`webdav/`, `owncloud/`) read bodies and shape replies; the
//! tree operations themselves are metadata operations ([`crate::meta::Meta`]).

pub mod check;
pub mod put;
pub mod refused;
