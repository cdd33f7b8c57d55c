//! dedupdav: a WebDAV gateway that deduplicates every upload at chunk level,
//! stores each unique chunk once (compressed, encrypted) in an object backend
//! and shows every user a private tree.
//!
//! # Layers and the dependency rule
//!
//! Top to bottom; a module imports only modules below it (and the helpers
//! [`clock`] and [`xml_escape`]). `tests/integration/layout.rs` checks this
//! on the source, and that `redb` is named only in `meta/redb/` and
//! `dav_server` only in `webdav/`.
//!
//! - [`http`]: the hyper service: accept loop and connection limits, Basic
//!   auth, routing to the protocol adapters, metrics, the web console at
//!   `/admin/`. (`app`, the wiring
//!   that assembles the parts from the configuration, sits just below it.)
//! - Protocol adapters: [`webdav`] (the only module naming dav-server: the
//!   file-system adapter, fast PROPFIND, etag quoting, lock tables) over
//!   [`owncloud`] (the ownCloud/Nextcloud dialect: status, OCS, chunked
//!   uploads, `OC-Checksum`, `oc:`/`nc:` properties). Both speak through
//!   [`wire`]: request bodies and their limits, ranges, routes, replies, and
//!   the one map from errors to HTTP statuses.
//! - Use cases: [`files`] (the one write pipeline), [`accounts`] (users,
//!   passwords and app passwords), [`jobs`] (background work under one runner),
//!   [`recovery`] (rebuilding the index from what is sealed upstream). [`config`]
//!   is the settings file's schema, read by these layers and above.
//! - [`store`]: the content store (chunking, dedup, sealing, reading).
//! - [`meta`]: the metadata interface (users, trees, sessions, chunk
//!   references), one async operation per logical change; the redb engine
//!   behind it is private to `meta/redb/`.
//! - [`crypto`] and [`backend`]: keys, ids and the sealed object format;
//!   where sealed objects live (local directory, upstream WebDAV).
//!
//! A layer that counts something for `/metrics` (upstream requests, dedup
//! hits, index commits) owns a small handle of `prometheus_client` metrics
//! and records into it; [`http`] registers clones of those handles, so no
//! lower layer imports it.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod app;
pub mod backend;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod jobs;
pub mod meta;
pub mod owncloud;
pub mod recovery;
pub mod store;
pub mod webdav;
pub mod wire;
pub mod xml_escape;
