//! The quota inside the redb engine's transactions: reading what a user
//! holds, and charging or crediting their `used` bytes. The policy itself
//! (what is allowed) is [`crate::meta::quota`].

use redb::ReadableTable;

use super::sessions::bytes_in_sessions;
use crate::meta::quota::Holdings;
use crate::meta::redb::tx::{get_user, WriteTables};
use crate::meta::tree::{NsError, Owner};

/// Reads a user's holdings; `except_session` is left out of the
/// session bytes (the session being assembled into a file).
pub(crate) fn read_holdings(
    users: &impl ReadableTable<&'static str, &'static [u8]>,
    uploads: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    owner: &Owner,
    except_session: Option<&str>,
) -> Result<Holdings, NsError> {
    let user = get_user(users, &owner.name)?.ok_or(NsError::NoUser)?;
    let in_sessions = match user.quota {
        // Without a quota nothing needs the sessions' bytes.
        None => 0,
        Some(_) => bytes_in_sessions(uploads, owner.id, except_session)?,
    };
    Ok(Holdings {
        used: user.used,
        in_sessions,
        quota: user.quota,
    })
}

/// Replaces `old` bytes of the owner's `used` by `new` ones inside a write
/// transaction, refusing to go over the quota (see [`Holdings::check`]).
pub(crate) fn charge(
    t: &mut WriteTables<'_>,
    owner: &Owner,
    old: u64,
    new: u64,
    except_session: Option<&str>,
) -> Result<(), NsError> {
    let mut user = get_user(&*t.users, &owner.name)?.ok_or(NsError::NoUser)?;
    if new > old {
        read_holdings(&*t.users, &*t.uploads, owner, except_session)?.check(old, new)?;
    }
    user.used = user.used.saturating_sub(old).saturating_add(new);
    t.put_user(&user)?;
    Ok(())
}

/// Gives `bytes` back to the owner's `used` (a deletion).
pub(crate) fn credit(t: &mut WriteTables<'_>, owner: &Owner, bytes: u64) -> Result<(), NsError> {
    charge(t, owner, bytes, 0, None)
}
