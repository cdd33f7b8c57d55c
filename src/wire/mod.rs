//! What the protocol adapters (`webdav/`, `owncloud/`) and the HTTP service
//! share: request bodies and their limits, byte ranges, the routes of the
//! URL space, replies, and the one place where every layer's errors become
//! HTTP statuses. Nothing here knows a protocol's semantics or the service
//! that dispatches to it.

pub mod body;
pub mod error;
pub mod ranges;
pub mod reply;
pub mod routes;
