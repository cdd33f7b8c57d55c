//! The metadata conformance suite: what every metadata engine must do,
//! written once against [`Meta`]'s public operations and run on every
//! engine. An engine passes when every case passes on a fresh, empty
//! installation; a new engine adds one `conformance_suite!` line at the
//! end of this file.
//!
//! The cases live in the submodules, one per area (tree, quota, dead
//! properties, chunk references, pending records, upload sessions, users,
//! app passwords, TOTP enrolments, WebDAV locks, concurrent writers). They never name an engine's types: only `Meta`,
//! its records and its errors. The table in `conformance_suite!` lists
//! each case once, with the runtime it needs (`serial`: a current-thread
//! runtime, `parallel`: a multi-thread one, for the concurrent writers).

mod app_passwords;
mod chunks;
mod concurrency;
mod locks;
mod pending;
mod props;
mod quota;
mod scrub;
mod sessions;
mod totp;
mod tree;
mod users;

use std::future::Future;
use std::path::Path;

use crate::crypto::ChunkId;
use crate::meta::{
    split_path, FileCommit, IndexError, ManifestEntry, Meta, NamePath, NewPart, NewUser, Node,
    Owner, PropLimits, StoredProp,
};

/// The caps on dead properties every engine is opened with, small so the
/// cases reach them.
pub(super) const LIMITS: PropLimits = PropLimits {
    per_node: 3,
    value_bytes: 32,
};

/// A collector's cutoff far enough in the future that every release
/// is before it.
const LATER: u64 = u64::MAX / 2;

/// Runs one case on a fresh engine made by `open` in a new temporary
/// folder, kept until the case ends.
async fn run<O, C, F>(open: O, case: C)
where
    O: FnOnce(&Path) -> Result<Meta, IndexError>,
    C: FnOnce(Meta) -> F,
    F: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temporary folder");
    let meta = open(dir.path()).expect("a fresh engine opens");
    case(meta.clone()).await;
    // Whatever a case did through the operations leaves the metadata
    // consistent: the consistency walk agrees with every operation.
    let found = meta.verify().await.expect("the consistency walk runs");
    assert!(found.is_clean(), "inconsistent after the case: {found:#?}");
}

/// A path from its text form ("a/b/c").
fn p(text: &str) -> NamePath {
    split_path(text.as_bytes()).expect("a valid test path")
}

/// A new user with an empty tree.
async fn user(meta: &Meta, name: &str, quota: Option<u64>) -> Owner {
    let new = NewUser {
        name: name.into(),
        password_hash: "$argon2id$test".into(),
        admin: false,
        quota,
    };
    Owner::from(&meta.add_user(new).await.expect("a new user"))
}

fn chunk(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

/// What a chunk's object costs in the backend in these cases.
fn sealed(len: u32) -> u32 {
    len.saturating_add(16)
}

/// A file made of `chunks` (number, length), each uploaded by this commit.
fn file_of(chunks: &[(u8, u32)]) -> FileCommit {
    let entries: Vec<ManifestEntry> = chunks
        .iter()
        .map(|&(n, len)| ManifestEntry { id: chunk(n), len })
        .collect();
    FileCommit {
        size: entries.iter().map(|e| e.len as u64).sum(),
        uploaded: entries.iter().map(|e| (e.id, sealed(e.len))).collect(),
        chunks: entries,
        mtime: None,
        checksums: None,
    }
}

/// A file of one chunk.
fn file(size: u32, n: u8) -> FileCommit {
    file_of(&[(n, size)])
}

/// The same content, committed without uploading (its chunks must be
/// stored already).
fn stored(mut commit: FileCommit) -> FileCommit {
    commit.uploaded.clear();
    commit
}

/// A part of a chunked upload made of `chunks`, each uploaded by it.
fn part_of(chunks: &[(u8, u32)]) -> NewPart {
    let commit = file_of(chunks);
    NewPart {
        size: commit.size,
        chunks: commit.chunks,
        uploaded: commit.uploaded,
    }
}

/// A dead property in the namespace `urn:x`.
fn prop(name: &str, value: &[u8]) -> StoredProp {
    StoredProp {
        name: name.into(),
        prefix: Some("x".into()),
        namespace: Some("urn:x".into()),
        xml: Some(value.to_vec()),
    }
}

/// The names of a listing, in its order.
fn names(listing: &[(String, Node)]) -> Vec<String> {
    listing.iter().map(|(n, _)| n.clone()).collect()
}

/// The reference count of chunk `n` (0 when it has no record).
async fn refs(meta: &Meta, n: u8) -> u64 {
    meta.chunk(&[n; 32])
        .await
        .expect("chunk read")
        .map_or(0, |c| c.refs)
}

async fn used(meta: &Meta, owner: &Owner) -> u64 {
    meta.usage(owner).await.expect("usage").0
}

/// Fails the case when `result` is not the error `pattern` names.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            Err(other) => panic!(
                "{}: expected {}, got the error {other:?}",
                stringify!($result),
                stringify!($pattern)
            ),
            Ok(_) => panic!(
                "{}: expected {}, got success",
                stringify!($result),
                stringify!($pattern)
            ),
        }
    };
}
use assert_err;

/// The case table, and one test per case for the engine `$engine` opened
/// by `$open` (a `|dir: &Path| -> Result<Meta, IndexError>`).
macro_rules! conformance_suite {
    ($engine:ident, $open:expr) => {
        mod $engine {
            use super::*;
            conformance_suite!(@cases $open;
                serial tree::mkdir_creates_folders_and_refuses_what_is_there,
                serial tree::lookup_and_list_answer_what_is_there,
                serial tree::listing_is_in_byte_order_of_names,
                serial tree::remove_refuses_the_root_missing_and_non_empty,
                serial tree::remove_frees_the_name_and_the_bytes,
                serial tree::rename_keeps_the_id_and_the_etag,
                serial tree::rename_refuses_what_it_cannot_do,
                serial tree::rename_replacing_swaps_in_one_step,
                serial tree::copy_file_shares_the_content,
                serial tree::copy_replacing_copies_a_tree_in_one_step,
                serial tree::a_refused_copy_leaves_the_destination_whole,
                serial tree::set_mtime_is_a_change,
                serial tree::etags_change_on_every_change_and_never_repeat,
                serial tree::folder_sizes_follow_the_files_below,
                serial tree::commit_file_creates_then_replaces,
                serial tree::commit_file_refuses_folders_and_missing_parents,
                serial tree::open_file_and_write_target_read_one_snapshot,
                serial quota::a_commit_may_fill_the_quota_exactly,
                serial quota::replacing_a_file_frees_its_bytes,
                serial quota::shrinking_is_allowed_over_the_quota,
                serial quota::sessions_hold_bytes_against_the_quota,
                serial quota::without_a_quota_nothing_is_refused,
                serial props::a_patch_applies_all_or_none,
                serial props::caps_refuse_the_whole_patch,
                serial props::dead_properties_count_in_the_quota,
                serial props::properties_follow_a_rename_and_copy_props,
                serial chunks::commits_reference_chunks_and_removal_releases_them,
                serial chunks::a_commit_needs_its_chunks_stored,
                serial chunks::copies_and_new_versions_move_references,
                serial chunks::unreferenced_chunks_respect_cutoff_and_limit,
                serial chunks::forget_chunks_keeps_what_was_referenced_again,
                serial chunks::stats_count_files_bytes_and_chunks,
                serial pending::pending_records_expire_and_are_forgotten,
                serial pending::pending_records_yield_to_chunk_records,
                serial pending::a_commit_settles_the_pending_records_it_uploaded,
                serial pending::pages_walk_every_record_once_in_id_order,
                serial scrub::a_scrub_pass_records_its_position_and_findings,
                serial scrub::a_finished_pass_keeps_only_what_it_confirmed,
                serial scrub::scrub_findings_are_bounded,
                serial sessions::sessions_are_created_once_per_name,
                serial sessions::parts_are_added_replaced_and_removed,
                serial sessions::upload_manifest_follows_assembly_order,
                serial sessions::assembly_makes_the_file_in_one_step,
                serial sessions::assembly_checks_leave_the_session_intact,
                serial sessions::abandon_and_expiry_release_the_chunks,
                serial sessions::another_users_session_is_invisible,
                serial users::users_are_added_once_with_valid_names,
                serial users::password_quota_and_removal,
                serial users::trees_of_users_are_separate,
                serial app_passwords::app_passwords_are_added_listed_and_revoked,
                serial app_passwords::last_use_is_recorded_at_most_once_a_minute,
                serial app_passwords::removing_a_user_removes_their_app_passwords,
                serial users::audited_changes_are_logged_with_them,
                serial users::disabled_users_and_updates_keep_the_rest,
                serial totp::totp_steps_are_accepted_once_and_go_with_the_user,
                serial totp::history_is_kept_in_order_and_trimmed,
                serial locks::exclusive_locks_conflict_on_a_path,
                serial locks::shared_locks_share_a_path,
                serial locks::depth_infinity_covers_a_folder_and_below,
                serial locks::refresh_extends_and_expiry_frees,
                serial locks::release_needs_the_lock_token,
                serial locks::locks_are_capped_per_user,
                serial locks::locks_go_with_what_they_name,
                parallel concurrency::racing_locks_grant_one,
                parallel concurrency::writers_into_one_folder_lose_nothing,
                parallel concurrency::writers_of_one_file_leave_one_version,
                parallel concurrency::racing_commits_never_exceed_the_quota,
                parallel concurrency::racing_renames_keep_every_file_once,
                parallel concurrency::collection_racing_commits_never_dangles,
            );
        }
    };
    (@cases $open:expr; $($flavour:ident $module:ident :: $case:ident),* $(,)?) => {$(
        conformance_suite!(@case $flavour $open; $module $case);
    )*};
    (@case serial $open:expr; $module:ident $case:ident) => {
        #[tokio::test]
        async fn $case() {
            run($open, super::$module::$case).await
        }
    };
    (@case parallel $open:expr; $module:ident $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            run($open, super::$module::$case).await
        }
    };
}

conformance_suite!(on_redb, |dir: &Path| Meta::open_redb(
    &dir.join("index.redb"),
    LIMITS
));
