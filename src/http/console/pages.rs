//! The console's pages, each a function of what it shows. Forms post to
//! the paths `mod.rs` answers and carry the session's CSRF token.

use std::fmt::Write;

use http::StatusCode;

use super::html::{self, csrf_field, esc, human, line_chart, page, usage_bar, Series, Viewer};
use super::session::Flash;
use super::{html_reply, Reply};
use crate::accounts::totp::TotpSecret;
use crate::jobs::JobState;
use crate::meta::history::HistorySample;
use crate::meta::{AppPasswordInfo, AuditRecord, Stats, UserRecord};
use std::time::{SystemTime, UNIX_EPOCH};

/// Who is looking and what the page needs of their session.
pub struct Ctx<'a> {
    pub user: &'a UserRecord,
    pub csrf: &'a str,
    pub flash: Option<&'a Flash>,
}

impl Ctx<'_> {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: &self.user.name,
            admin: self.user.admin,
            csrf: self.csrf,
        }
    }

    fn page(&self, title: &str, body: &str) -> Reply {
        html_reply(
            StatusCode::OK,
            page(title, Some(&self.viewer()), self.flash, body),
        )
    }
}

pub fn login(status: StatusCode, problem: Option<&str>) -> Reply {
    let body = "<form class=\"box\" method=\"post\" action=\"/admin/login\">\
        <label for=\"user\">User name</label><input type=\"text\" id=\"user\" name=\"user\" autocomplete=\"username\" required autofocus>\
        <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
        <label for=\"code\">Code from your authenticator app <span class=\"muted\">(only if you turned on two-factor login)</span></label>\
        <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{6}\" maxlength=\"6\">\
        <p><button type=\"submit\">Log in</button></p>\
        <p class=\"muted\">Use your account password here; app passwords are for sync clients.</p></form>";
    let flash = problem.map(|p| Flash::Refused(p.to_string()));
    html_reply(status, page("Log in", None, flash.as_ref(), body))
}

fn tile(out: &mut String, label: &str, value: &str) {
    let _ = write!(
        out,
        "<div class=\"tile\"><div class=\"value\">{}</div><div class=\"label\">{}</div></div>",
        esc(value),
        esc(label)
    );
}

pub fn dashboard(ctx: &Ctx, stats: &Stats, history: &[HistorySample]) -> Reply {
    let mut body = String::from("<section class=\"tiles\">");
    let ratio = if stats.stored_bytes > 0 {
        format!(
            "{:.2}",
            stats.logical_bytes as f64 / stats.stored_bytes as f64
        )
    } else {
        "–".into()
    };
    tile(&mut body, "users", &stats.users.to_string());
    tile(&mut body, "files", &stats.files.to_string());
    tile(
        &mut body,
        "logical bytes (what users see)",
        &human(stats.logical_bytes),
    );
    tile(
        &mut body,
        "stored bytes (compressed, deduplicated)",
        &human(stats.stored_bytes),
    );
    tile(&mut body, "dedup ratio", &ratio);
    tile(
        &mut body,
        "bytes saved",
        &human(stats.logical_bytes.saturating_sub(stats.stored_bytes)),
    );
    tile(&mut body, "unique chunks", &stats.chunks.to_string());
    tile(
        &mut body,
        "uploads not committed",
        &format!(
            "{} objects, {}",
            stats.pending_objects,
            human(stats.pending_bytes)
        ),
    );
    body.push_str("</section>\n<h2>History</h2><section class=\"charts\">");
    let bytes = [
        Series {
            name: "logical bytes",
            class: "logical",
            points: history
                .iter()
                .map(|s| (s.at, s.logical_bytes as f64))
                .collect(),
        },
        Series {
            name: "stored bytes",
            class: "stored",
            points: history
                .iter()
                .map(|s| (s.at, s.stored_bytes as f64))
                .collect(),
        },
    ];
    body.push_str(&line_chart("Logical and stored bytes", &bytes, |v| {
        human(v as u64)
    }));
    // Requests per minute between two samples (a restart starts the count
    // again: such a pair is skipped).
    let rate: Vec<(i64, f64)> = history
        .windows(2)
        .filter(|w| w[1].requests >= w[0].requests && w[1].at > w[0].at)
        .map(|w| {
            let minutes = (w[1].at - w[0].at) as f64 / 60.0;
            (w[1].at, (w[1].requests - w[0].requests) as f64 / minutes)
        })
        .collect();
    let requests = [Series {
        name: "requests per minute",
        class: "requests",
        points: rate,
    }];
    body.push_str(&line_chart("Requests per minute", &requests, |v| {
        format!("{v:.0}")
    }));
    // Mean upstream latency between two samples (pairs across a restart,
    // or without attempts, are skipped).
    let latency: Vec<(i64, f64)> = history
        .windows(2)
        .filter(|w| w[1].upstream_attempts > w[0].upstream_attempts)
        .filter(|w| w[1].upstream_micros >= w[0].upstream_micros)
        .map(|w| {
            let attempts = (w[1].upstream_attempts - w[0].upstream_attempts) as f64;
            let micros = (w[1].upstream_micros - w[0].upstream_micros) as f64;
            (w[1].at, micros / attempts / 1000.0)
        })
        .collect();
    if !latency.is_empty() {
        let series = [Series {
            name: "mean upstream latency (ms)",
            class: "latency",
            points: latency,
        }];
        body.push_str(&line_chart("Upstream latency", &series, |v| {
            format!("{v:.0} ms")
        }));
    }
    body.push_str("</section>\n");
    ctx.page("Dashboard", &body)
}

pub fn users(ctx: &Ctx, users: &[UserRecord]) -> Reply {
    let mut body = String::from(
        "<table><thead><tr><th>User</th><th>Role</th><th>Used</th><th>Usage</th><th>Quota</th><th>Two-factor</th></tr></thead><tbody>",
    );
    for u in users {
        let quota = u.quota.map_or_else(String::new, human);
        let _ = write!(
            body,
            "<tr><td>{name}</td><td>{role}</td><td>{used}</td><td>{bar}</td><td>\
             <form method=\"post\" action=\"/admin/users/quota\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"name\" value=\"{name}\">\
             <input type=\"text\" class=\"small\" name=\"quota\" value=\"{quota}\" placeholder=\"none\" aria-label=\"quota of {name}\">\
             <button type=\"submit\">Set</button></form></td><td>\
             <form method=\"post\" action=\"/admin/users/totp-reset\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"name\" value=\"{name}\">\
             <button type=\"submit\" class=\"quiet\" aria-label=\"reset two-factor login of {name}\">Reset</button></form></td></tr>",
            name = esc(&u.name),
            role = if u.admin { "administrator" } else { "user" },
            used = esc(&human(u.used)),
            bar = usage_bar(u.used, u.quota),
            csrf = csrf_field(ctx.csrf),
            quota = esc(&quota),
        );
    }
    body.push_str("</tbody></table>\n<h2>Add a user</h2>");
    let _ = write!(
        body,
        "<form class=\"box\" method=\"post\" action=\"/admin/users/add\">{}\
         <label for=\"name\">User name</label><input type=\"text\" id=\"name\" name=\"name\" required>\
         <label for=\"password\">Password <span class=\"muted\">(leave empty to generate one, shown once)</span></label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\">\
         <label for=\"quota\">Quota <span class=\"muted\">(such as 500M or 10G; empty for none)</span></label>\
         <input type=\"text\" id=\"quota\" name=\"quota\">\
         <label><input type=\"checkbox\" name=\"admin\"> Administrator</label>\
         <p><button type=\"submit\">Add user</button></p></form>",
        csrf_field(ctx.csrf)
    );
    ctx.page("Users", &body)
}

/// The background jobs: state, last runs, errors, and a button to run one
/// now.
pub fn jobs(ctx: &Ctx, jobs: &[(&'static str, JobState)]) -> Reply {
    let when = |t: Option<SystemTime>| {
        t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(|| "never".to_string(), |d| html::date(d.as_secs() as i64))
    };
    let mut body = String::from(
        "<table><thead><tr><th>Job</th><th>State</th><th>Last success</th><th>Runs</th>         <th>Errors</th><th>Last error</th><th></th></tr></thead><tbody>",
    );
    for (name, s) in jobs {
        let _ = write!(
            body,
            "<tr><td>{name}</td><td>{state}</td><td>{success}</td><td>{runs}</td><td>{errors}</td>\
             <td>{error}</td><td><form method=\"post\" action=\"/admin/jobs/run\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"job\" value=\"{name}\">\
             <button type=\"submit\" aria-label=\"run {name} now\">Run now</button></form></td></tr>",
            name = esc(name),
            state = if s.running { "running" } else { "waiting" },
            success = esc(&when(s.last_success)),
            runs = s.runs,
            errors = s.errors_total,
            error = esc(s.last_error.as_deref().unwrap_or("")),
            csrf = csrf_field(ctx.csrf),
        );
    }
    body.push_str("</tbody></table>\n");
    if jobs.is_empty() {
        body.push_str("<p class=\"muted\">No background jobs run in this process.</p>");
    }
    ctx.page("Jobs", &body)
}

/// The newest entries of the audit log: who changed what, when, from where.
pub fn audit(ctx: &Ctx, entries: &[AuditRecord]) -> Reply {
    let mut body = String::from(
        "<table><thead><tr><th>When</th><th>Who</th><th>From</th><th>What</th><th>Target</th>\
         <th>Detail</th></tr></thead><tbody>",
    );
    for r in entries {
        let e = &r.entry;
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&html::date(e.time)),
            esc(&e.actor),
            esc(&e.source),
            esc(&e.action),
            esc(&e.target),
            esc(&e.detail)
        );
    }
    body.push_str("</tbody></table>\n");
    ctx.page("Audit log", &body)
}

pub fn account(
    ctx: &Ctx,
    app_passwords: &[AppPasswordInfo],
    enrolled: bool,
    pending: Option<&TotpSecret>,
) -> Reply {
    let u = ctx.user;
    let mut body = format!(
        "<h2>Storage</h2><p>{} used{}</p><p>{}</p>",
        esc(&human(u.used)),
        u.quota
            .map(|q| format!(" of {}", esc(&human(q))))
            .unwrap_or_default(),
        usage_bar(u.used, u.quota)
    );
    body.push_str(
        "<h2>App passwords</h2><p>Give each sync client or device its own app password \
         instead of your account password; revoke one and only that device loses access.</p>",
    );
    if app_passwords.is_empty() {
        body.push_str("<p class=\"muted\">You have no app passwords.</p>");
    } else {
        body.push_str("<table><thead><tr><th>Label</th><th>Created</th><th>Last used</th><th></th></tr></thead><tbody>");
        for a in app_passwords {
            let _ = write!(
                body,
                "<tr><td>{label}</td><td>{created}</td><td>{used}</td><td>\
                 <form method=\"post\" action=\"/admin/account/app-passwords/revoke\" class=\"inline\">{csrf}\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                 <button type=\"submit\" class=\"quiet\" aria-label=\"revoke {label}\">Revoke</button></form></td></tr>",
                label = esc(&a.label),
                created = esc(&html::date(a.created)),
                used = a
                    .last_used
                    .map(|t| esc(&html::date(t as i64)))
                    .unwrap_or_else(|| "never".into()),
                csrf = csrf_field(ctx.csrf),
                id = a.id,
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<form class=\"box\" method=\"post\" action=\"/admin/account/app-passwords/add\">{}\
         <label for=\"label\">New app password for</label>\
         <input type=\"text\" id=\"label\" name=\"label\" maxlength=\"100\" placeholder=\"laptop, phone, …\" required>\
         <p><button type=\"submit\">Create app password</button></p></form>",
        csrf_field(ctx.csrf)
    );
    body.push_str("<h2 id=\"totp\">Two-factor login</h2>");
    if let Some(secret) = pending {
        let uri = secret.uri(&u.name);
        let _ = write!(
            body,
            "<p>Scan this code with an authenticator app (or enter the key by hand), \
             then type the 6-digit code it shows to finish.</p>\
             <div class=\"qr\">{}</div><p>Key: <code id=\"totp-key\">{}</code></p>\
             <p class=\"muted\">URI: <code id=\"totp-uri\">{}</code></p>\
             <form class=\"box\" method=\"post\" action=\"/admin/account/totp/confirm\">{}\
             <label for=\"confirm-code\">Code</label>\
             <input type=\"text\" id=\"confirm-code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"6\" required>\
             <p><button type=\"submit\">Turn on</button></p></form>",
            qr_svg(&uri),
            esc(&secret.base32()),
            esc(&uri),
            csrf_field(ctx.csrf)
        );
    } else if enrolled {
        let _ = write!(
            body,
            "<p>On: the console asks for a code from your authenticator app after your password. \
             (WebDAV and sync clients are not asked: they use app passwords.)</p>\
             <form class=\"box\" method=\"post\" action=\"/admin/account/totp/remove\">{}\
             <label for=\"remove-code\">Current code, to turn it off</label>\
             <input type=\"text\" id=\"remove-code\" name=\"code\" inputmode=\"numeric\" maxlength=\"6\" required>\
             <p><button type=\"submit\" class=\"quiet\">Turn off</button></p></form>",
            csrf_field(ctx.csrf)
        );
    } else {
        let _ = write!(
            body,
            "<p>Off. With it on, logging in to this console also needs a code from an \
             authenticator app.</p>\
             <form method=\"post\" action=\"/admin/account/totp/start\">{}\
             <button type=\"submit\">Set up two-factor login</button></form>",
            csrf_field(ctx.csrf)
        );
    }
    ctx.page("My account", &body)
}

/// The QR code of `text` as an inline SVG element.
fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build();
            // Drop the XML declaration: the element goes inside HTML.
            svg.find("<svg")
                .map_or_else(String::new, |i| svg[i..].to_string())
        }
        Err(e) => format!(
            "<p class=\"muted\">The QR code could not be drawn ({}); enter the key by hand.</p>",
            esc(&e.to_string())
        ),
    }
}
