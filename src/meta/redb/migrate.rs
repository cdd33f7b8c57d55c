//! Schema migrations, each run inside the transaction that opens the index,
//! so an index is either migrated completely or left as it was.

use std::collections::HashMap;

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::*;
use crate::meta::records::{prop_cost, Node, UserRecord};
use crate::meta::IndexError;

/// Version 2 → 3: adds the `pending` table (created empty: a version-2
/// gateway kept no account of uncommitted objects) and counts every dead
/// property in its owner's `used`, as version 3 does from now on.
pub(super) fn from_v2(
    tx: &WriteTransaction,
    meta: &mut Table<'_, &'static str, u64>,
) -> Result<(), IndexError> {
    tx.open_table(PENDING)?;
    let mut cost_by_owner: HashMap<u64, u64> = HashMap::new();
    {
        let props = tx.open_table(PROPS)?;
        let nodes = tx.open_table(NODES)?;
        for row in props.iter()? {
            let (k, v) = row?;
            let (node_id, key) = k.value();
            let Some(node) = nodes.get(node_id)? else {
                continue;
            };
            let owner = Node::decode(node.value())?.owner;
            *cost_by_owner.entry(owner).or_default() += prop_cost(key, v.value());
        }
    }
    if !cost_by_owner.is_empty() {
        let mut users = tx.open_table(USERS)?;
        let mut updated = Vec::new();
        for row in users.iter()? {
            let (_, v) = row?;
            let mut user = UserRecord::decode(v.value())?;
            if let Some(cost) = cost_by_owner.get(&user.id) {
                user.used = user.used.saturating_add(*cost);
                updated.push(user);
            }
        }
        for user in updated {
            users.insert(user.name.as_str(), user.encode().as_slice())?;
        }
    }
    meta.insert(KEY_SCHEMA, 3)?;
    tracing::info!("migrated the index from schema version 2 to 3");
    Ok(())
}
