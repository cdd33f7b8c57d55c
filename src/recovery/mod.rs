//! Disaster recovery: `dedupdav restore` rebuilds the index from what is
//! sealed upstream, with nothing but the configuration and the master key.
//!
//! 1. **Find the base.** List `meta/`, compute the names of snapshot heads
//!    1, 2, … and take the newest whose head and pieces all authenticate
//!    and whose dump hashes to what the head says; an unreadable one is
//!    reported and the one before it tried. Without any snapshot the chain
//!    must start at an empty index (its first row sets `schema_version`).
//! 2. **Replay the chain** from the base's chain head: the segment after
//!    the last, found by name, accepted only if it continues the chain
//!    (`meta::journal::ChainCheck`), its rows applied whole transactions at
//!    a time, rows the snapshot already holds skipped.
//! 3. **Prove the end.** The chain ends where the next segment's name is
//!    not listed. A segment that is there but does not authenticate or
//!    does not continue the chain, or a later segment found beyond the end
//!    (a lost one in between), means changes were lost: the restore says
//!    which and refuses, unless told to accept the loss; then it restores
//!    the newest state it can prove and deletes the segments it could not
//!    use, so a later restore does not trip over them.
//! 4. **Finish.** Sequence numbering continues after the restored state,
//!    every chunk's references are recounted from the manifests, a new
//!    snapshot is sealed (the restored state is the new chain's base), and
//!    the file is moved into place. `dedupdav restore` then runs `check`.
//!
//! Why it cannot be fooled silently: every object is authenticated under
//! the master key with its name bound in, pieces are checked against their
//! keyed ids and the dump against the head's hash, segments against the
//! chain; each failure is an error that names the object, never a skip.

mod restore;

pub use restore::{restore, RestoreError, RestoreOptions, RestoreReport};
