//! The admin API's endpoints: each reads its JSON fields, calls one use
//! case and shapes the answer. No account logic lives here.

use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::error::{json_response, ApiError};
use crate::accounts::manage::{self, AccountChange, Actor, NewAccount};
use crate::accounts::{app_passwords, parse_size, stats_json, user_json};
use crate::config::BackendConfig;
use crate::files::check;
use crate::http::{Gateway, GwBody};

type Reply = Result<Response<GwBody>, ApiError>;

fn ok(body: Value) -> Reply {
    Ok(json_response(StatusCode::OK, &body))
}

/// Refuses fields other than `allowed`.
fn only(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::BadRequest(format!(
            "unknown field {k:?} (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn bad(field: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!("{field} must be {what}"))
}

fn string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "a string")),
    }
}

fn flag(body: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(field, "true or false")),
    }
}

/// `quota`: absent (`None`), `null` (`Some(None)`: no limit), a byte
/// count, or a size such as "10GiB".
fn quota(body: &Map<String, Value>) -> Result<Option<Option<u64>>, ApiError> {
    let what = "null, a byte count or a size such as \"10GiB\"";
    match body.get("quota") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => n.as_u64().map(|q| Some(Some(q))).ok_or(bad("quota", what)),
        Some(Value::String(s)) => Ok(Some(Some(parse_size(s).map_err(|_| bad("quota", what))?))),
        Some(_) => Err(bad("quota", what)),
    }
}

pub(super) async fn list_users(gw: &Gateway) -> Reply {
    let users = gw.meta.users().await?;
    ok(json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() }))
}

pub(super) async fn get_user(gw: &Gateway, name: &str) -> Reply {
    match gw.meta.user(name).await? {
        Some(u) => ok(user_json(&u)),
        None => Err(ApiError::NoUser(name.into())),
    }
}

pub(super) async fn create_user(gw: &Gateway, actor: &Actor, body: Map<String, Value>) -> Reply {
    only(&body, &["name", "password", "admin", "quota"])?;
    let name = string(&body, "name")?.ok_or_else(|| bad("name", "given"))?;
    let new = NewAccount {
        name,
        password: string(&body, "password")?,
        admin: flag(&body, "admin")?.unwrap_or(false),
        quota: quota(&body)?.flatten(),
    };
    let created = manage::create(&gw.meta, actor, new).await?;
    let mut answer = json!({ "user": user_json(&created.user) });
    if let Some(p) = created.generated_password {
        answer["password"] = Value::String(p);
    }
    Ok(json_response(StatusCode::CREATED, &answer))
}

pub(super) async fn update_user(
    gw: &Gateway,
    actor: &Actor,
    name: &str,
    body: Map<String, Value>,
) -> Reply {
    only(&body, &["password", "quota", "admin", "disabled"])?;
    let change = AccountChange {
        password: string(&body, "password")?,
        quota: quota(&body)?,
        admin: flag(&body, "admin")?,
        disabled: flag(&body, "disabled")?,
    };
    if change.is_empty() {
        return Err(ApiError::BadRequest(
            "nothing to change: give password, quota, admin or disabled".into(),
        ));
    }
    let user = manage::change(&gw.meta, actor, name, change).await?;
    ok(user_json(&user))
}

pub(super) async fn remove_user(gw: &Gateway, actor: &Actor, name: &str) -> Reply {
    manage::remove(&gw.meta, actor, name).await?;
    ok(json!({ "removed": name }))
}

pub(super) async fn list_app_passwords(gw: &Gateway, user: &str) -> Reply {
    let listed = app_passwords::list(&gw.meta, user).await?;
    let items: Vec<Value> = listed
        .iter()
        .map(|a| json!({"id": a.id, "label": a.label, "created": a.created, "last_used": a.last_used}))
        .collect();
    ok(json!({ "user": user, "app_passwords": items }))
}

pub(super) async fn create_app_password(
    gw: &Gateway,
    actor: &Actor,
    user: &str,
    body: Map<String, Value>,
) -> Reply {
    only(&body, &["label"])?;
    let label = string(&body, "label")?.ok_or_else(|| bad("label", "given"))?;
    let created =
        manage::create_app_password(&gw.meta, gw.auth.keys(), actor, user, &label).await?;
    let body = json!({
        "id": created.info.id,
        "label": created.info.label,
        "created": created.info.created,
        "password": created.secret,
    });
    Ok(json_response(StatusCode::CREATED, &body))
}

pub(super) async fn revoke_app_password(
    gw: &Gateway,
    actor: &Actor,
    user: &str,
    id: &str,
) -> Reply {
    let id = id
        .parse::<u64>()
        .map_err(|_| bad("the app password id", "a number"))?;
    manage::revoke_app_password(&gw.meta, actor, user, id).await?;
    ok(json!({ "revoked": id, "user": user }))
}

pub(super) async fn stats(gw: &Gateway) -> Reply {
    let stats = gw.meta.stats().await?;
    let files = gw.meta.files_by_owner().await?;
    let users: Vec<Value> = gw
        .meta
        .users()
        .await?
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "files": files.get(&u.id).copied().unwrap_or(0),
                "logical_bytes": u.used,
                "quota": u.quota,
                "disabled": u.disabled,
            })
        })
        .collect();
    ok(json!({ "installation": stats_json(&stats), "users": users }))
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs()))
}

pub(super) fn jobs(gw: &Gateway) -> Reply {
    let Some(status) = gw.jobs.lock().clone() else {
        return ok(json!({ "jobs": [] }));
    };
    let jobs: Vec<Value> = status
        .snapshot()
        .into_iter()
        .map(|(name, s)| {
            let counters: Map<String, Value> = s
                .counters
                .iter()
                .map(|c| (c.name.to_string(), json!(c.value)))
                .collect();
            json!({
                "name": name,
                "running": s.running,
                "last_start": unix(s.last_start),
                "last_end": unix(s.last_end),
                "last_success": unix(s.last_success),
                "runs": s.runs,
                "items_last_run": s.items_last_run,
                "items_total": s.items_total,
                "errors_total": s.errors_total,
                "last_error": s.last_error,
                "counters": counters,
            })
        })
        .collect();
    ok(json!({ "jobs": jobs }))
}

pub(super) async fn run_job(gw: &Gateway, actor: &Actor, name: &str) -> Reply {
    let Some(status) = gw.jobs.lock().clone() else {
        return Err(ApiError::NoJobs);
    };
    if !status.run_now(name) {
        return Err(ApiError::NoJob(name.into()));
    }
    manage::record_job_run(&gw.meta, actor, name).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "job": name, "started": true }),
    ))
}

pub(super) async fn check(gw: &Gateway) -> Reply {
    let options = check::CheckOptions { read_percent: None };
    let report = check::check(&gw.meta, &gw.store, options, |_| {}, |_| {})
        .await
        .map_err(|e| ApiError::Internal(format!("the check could not run: {e}")))?;
    ok(check::render_json(&report))
}

fn ms(d: Duration) -> Value {
    json!(d.as_secs_f64() * 1000.0)
}

pub(super) async fn upstream(gw: &Gateway) -> Reply {
    if !matches!(gw.config.backend, BackendConfig::Webdav(_)) {
        return ok(json!({
            "kind": gw.config.backend.kind(),
            "ok": true,
            "backend": gw.store.backend().describe(),
        }));
    }
    // What this gateway's own requests met since it started.
    let attempts = gw.store.backend().upstream_metrics().map(|m| {
        let [ok, not_found, retried, failed] = m.outcome_totals();
        json!({"ok": ok, "not_found": not_found, "retried": retried, "failed": failed})
    });
    let store = crate::app::open_webdav(&gw.config)
        .map_err(|e| ApiError::Internal(format!("the upstream client: {e}")))?;
    match store.check().await {
        Ok(r) => ok(json!({
            "kind": "webdav",
            "ok": true,
            "attempts": attempts,
            "upstream": r.upstream,
            "server": r.server,
            "dav": r.dav,
            "probe_bytes": r.probe_size,
            "latency_ms": {
                "propfind": ms(r.propfind_latency),
                "write": ms(r.write_latency),
                "read": ms(r.read_latency),
                "delete": ms(r.delete_latency),
            },
        })),
        Err(e) => ok(json!({
            "kind": "webdav",
            "ok": false,
            "attempts": attempts,
            "upstream": gw.store.backend().describe(),
            "error": e.to_string(),
        })),
    }
}

/// Entries `GET /audit` answers at most.
const MAX_AUDIT_LIMIT: usize = 10_000;

pub(super) async fn audit(gw: &Gateway, query: Option<&str>) -> Reply {
    let mut limit = 100;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", v)) => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_AUDIT_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad("limit", &format!("a number from 1 to {MAX_AUDIT_LIMIT}"))
                    })?;
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {pair:?} (allowed: limit)"
                )))
            }
        }
    }
    let entries = gw.meta.audit_log(limit).await?;
    ok(json!({ "entries": entries }))
}
