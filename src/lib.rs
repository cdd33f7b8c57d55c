//! dedupdav: a WebDAV gateway that deduplicates every upload at chunk level,
//! stores each unique chunk once (compressed, encrypted) in an object backend
//! and shows every user a private tree.
//!
//! Layers, top to bottom:
//! - [`front`]: the HTTP service (auth, routing, ownCloud endpoints).
//! - [`dav`]: the WebDAV file system over one user's namespace.
//! - [`namespace`]: the per-user tree of folders and files (redb index).
//! - [`store`]: the content store (chunking, dedup, sealing, reading).
//! - [`crypto`]: keys, chunk ids, object names, the sealed object format.
//! - [`backend`]: where sealed objects live (local directory, upstream WebDAV).
//! - [`admin`]: users, stats and other operator jobs.
//! - [`jobs`]: background work (garbage collection, upload expiry) under one runner.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod app;
pub mod backend;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod jobs;
pub mod meta;
pub mod owncloud;
pub mod store;
pub mod webdav;
pub mod xml_escape;
