//! The integration tests, as one test binary: the crate and the harnesses
//! in `common/` are linked once, not once per file. Each module is what
//! used to be a file of its own under `tests/`; `common::load` says what
//! running them in one process changes and how the tests that care are
//! kept apart.

#[macro_use]
mod common;

mod admin_api;
mod app_passwords;
mod bad_input;
mod browser;
mod cache;
mod check;
mod cli;
mod console;
mod crash;
mod dedup_and_privacy;
mod dedup_scope;
mod drive_clients;
mod fuzz_smoke;
mod gc;
mod hostile;
mod isolation;
mod jobs;
mod layout;
mod leaks;
mod limits;
mod litmus;
mod locks;
mod metadata;
mod metrics;
mod owncloud_clients;
mod owncloud_protocol;
mod packs;
mod propfind;
mod rclone_cadaver_davfs;
mod resource_limits;
mod restore;
mod scrub;
mod sweep;
mod tls;
mod upstream_faults;
mod upstream_webdav;
mod visible_ids;
