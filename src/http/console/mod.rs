//! The web console at `/admin/`: server-rendered HTML for people (the
//! WebDAV and OCS endpoints are for programs). Owns the console's login
//! (account password, then a TOTP code when the user enrolled one), its
//! sessions, CSRF defence, and the pages: dashboard and users (admins),
//! "my account" with app passwords and TOTP enrolment (everyone).
//!
//! It sits in `http/` because it is one more way in over the same parts:
//! passwords are checked by the [`Authenticator`](super::auth) (same
//! throttle, same verification slots), accounts and app passwords change
//! through [`crate::accounts`], figures come from [`crate::meta`].
//!
//! Defences, and why:
//! - **Sessions** ([`session`]): 256-bit random ids in a bounded table,
//!   12 h idle expiry; the cookie is `HttpOnly` (no script reads it),
//!   `SameSite=Strict` (no other site's page sends it), `Path=/admin`, and
//!   `Secure` when `console.secure_cookies` says the gateway is reached
//!   over HTTPS. Each request re-reads the user: a removed user's session
//!   ends at once, and admin rights are the record's, not the session's.
//! - **CSRF**: every change is a POST carrying the session's token in a
//!   hidden field, compared in constant time; a POST whose `Origin` (or
//!   `Sec-Fetch-Site`) says another site sent it is refused first, also
//!   the login form's (against login CSRF).
//! - **Output**: every user-controlled text is escaped; pages carry a
//!   Content-Security-Policy that allows no script and nothing from
//!   elsewhere, and may not be framed. Secrets (a generated password, a
//!   new app password) are shown once, from the session, and never again;
//!   no page shows a password hash or an enrolled TOTP secret.
//! - **Bodies**: forms are read through `wire::body::read_capped`
//!   (16 KiB).

mod form;
mod html;
mod pages;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::auth::AuthError;
use super::Gateway;
use crate::accounts::app_passwords::AppPasswordError;
use crate::accounts::manage::{self, AccountChange, Actor, Created, NewAccount};
use crate::accounts::totp::TotpError;
use crate::accounts::AdminError;
use crate::config::ConsoleConfig;
use crate::crypto::Keys;
use crate::jobs::history::RequestTotal;
use crate::meta::history::HistorySample;
use crate::meta::{IndexError, UserRecord};
use crate::wire::body::{self, BodyError};
use crate::wire::reply::{full, GwBody};
use form::{cookie, Form};
use session::{Flash, Session, Sessions};

/// The session cookie's name.
pub const COOKIE: &str = "dedupdav_console";

/// Largest form body read, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Errors of the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    AppPassword(#[from] AppPasswordError),
    #[error(transparent)]
    Totp(#[from] TotpError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("checking the password failed: {0}")]
    Auth(#[source] AuthError),
}

/// The console's state in the gateway.
pub struct Console {
    sessions: Sessions,
    secure_cookies: bool,
    keys: Arc<Keys>,
}

impl Console {
    pub fn new(cfg: &ConsoleConfig, keys: Arc<Keys>) -> Self {
        Self {
            sessions: Sessions::default(),
            secure_cookies: cfg.secure_cookies,
            keys,
        }
    }
}

/// A logged-in request: the session (its id) and the user as the
/// metadata has them now.
struct Visit {
    sid: String,
    session: Session,
    user: UserRecord,
}

type Reply = Response<GwBody>;

/// Entries the audit page shows (the newest; the API pages further).
const AUDIT_PAGE_ENTRIES: usize = 200;

impl Gateway {
    /// Answers a request below `/admin` (`rest` is the path after it).
    pub(super) async fn console(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        rest: &str,
    ) -> (Reply, Option<String>) {
        let method = req.method().clone();
        if method == Method::GET || method == Method::HEAD {
            if rest == "/style.css" {
                return (style_sheet(), None);
            }
        } else if method != Method::POST {
            let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            return (res, None);
        }
        let post = method == Method::POST;
        if post && cross_site(req.headers()) {
            tracing::warn!(%peer, path = %rest, "console: cross-site form refused");
            return (forbidden("a form sent from another site is refused"), None);
        }
        if rest == "/login" {
            let res = if post {
                self.console_login(req, peer).await
            } else if self.console_visit(&req).await.ok().flatten().is_some() {
                Ok(redirect("/admin/"))
            } else {
                Ok(pages::login(StatusCode::OK, None))
            };
            return (settle(res), None);
        }
        let visit = match self.console_visit(&req).await {
            Ok(Some(v)) => v,
            Ok(None) if post => return (forbidden("your session has ended; log in again"), None),
            Ok(None) => return (redirect("/admin/login"), None),
            Err(e) => return (settle(Err(e)), None),
        };
        let name = Some(visit.user.name.clone());
        let res = if post {
            self.console_post(req, visit, rest, peer).await
        } else {
            self.console_get(visit, rest).await
        };
        (settle(res), name)
    }

    /// The session the request's cookie names, if it is live and its user
    /// still exists (a removed user's sessions end here).
    async fn console_visit(&self, req: &Request<Incoming>) -> Result<Option<Visit>, ConsoleError> {
        let sessions = &self.console.sessions;
        let Some(sid) = cookie(req.headers(), COOKIE) else {
            return Ok(None);
        };
        let Some(session) = sessions.touch(sid) else {
            return Ok(None);
        };
        match self.meta.user(&session.user).await? {
            Some(user) if user.id == session.user_id => Ok(Some(Visit {
                sid: sid.to_string(),
                session,
                user,
            })),
            _ => {
                sessions.end_user(session.user_id);
                Ok(None)
            }
        }
    }

    async fn console_login(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Reply, ConsoleError> {
        let form = read_form(req).await?;
        let (name, password, code) = (form.get("user"), form.get("password"), form.get("code"));
        if name.is_empty() || password.is_empty() {
            return Ok(pages::login(
                StatusCode::UNAUTHORIZED,
                Some("enter your user name and password"),
            ));
        }
        let user = match self
            .auth
            .check_account_password(name, password, peer.ip())
            .await
        {
            Ok(u) => u,
            Err(AuthError::Wrong | AuthError::Missing | AuthError::Malformed) => {
                return Ok(wrong_login());
            }
            Err(AuthError::Busy) => {
                let mut res = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many logins are being checked; try again shortly",
                );
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(super::auth::BUSY_RETRY_AFTER_SECS),
                );
                return Ok(res);
            }
            Err(e) => return Err(ConsoleError::Auth(e)),
        };
        let second = if crate::accounts::totp::enrolled(&self.meta, user.id).await? {
            match crate::accounts::totp::check_login(&self.meta, user.id, code).await {
                Ok(()) => true,
                Err(TotpError::WrongCode) => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            true
        };
        self.auth.console_outcome(peer.ip(), name, second);
        if !second {
            tracing::warn!(%peer, user = %user.name, "console: wrong or reused TOTP code");
            return Ok(wrong_login());
        }
        let sid = self.console.sessions.start(user.id, &user.name);
        tracing::info!(%peer, user = %user.name, "console: logged in");
        let mut res = redirect("/admin/");
        res.headers_mut()
            .insert(header::SET_COOKIE, self.session_cookie(&sid, false));
        Ok(res)
    }

    fn session_cookie(&self, sid: &str, clear: bool) -> HeaderValue {
        let secure = if self.console.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let age = if clear { 0 } else { session::IDLE.as_secs() };
        let value = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={age}{secure}",
            if clear { "" } else { sid }
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    async fn console_get(&self, visit: Visit, rest: &str) -> Result<Reply, ConsoleError> {
        let admin = visit.user.admin;
        let flash = self.console.sessions.take_flash(&visit.sid);
        let ctx = pages::Ctx {
            user: &visit.user,
            csrf: &visit.session.csrf,
            flash: flash.as_ref(),
        };
        match rest {
            "" | "/" => Ok(redirect(if admin {
                "/admin/dashboard"
            } else {
                "/admin/account"
            })),
            "/dashboard" | "/users" | "/jobs" | "/audit" if !admin => {
                Ok(forbidden("this page is for administrators"))
            }
            "/jobs" => {
                let jobs = self.jobs.lock().clone();
                let jobs = jobs.map(|status| status.snapshot()).unwrap_or_default();
                Ok(pages::jobs(&ctx, &jobs))
            }
            "/audit" => {
                let entries = self.meta.audit_log(AUDIT_PAGE_ENTRIES).await?;
                Ok(pages::audit(&ctx, &entries))
            }
            "/dashboard" => {
                let stats = self.meta.stats().await?;
                let since = crate::clock::unix_secs() - CHART_SPAN_SECS;
                let history = thin(self.meta.history_since(since).await?, CHART_POINTS);
                Ok(pages::dashboard(&ctx, &stats, &history))
            }
            "/users" => {
                let users = self.meta.users().await?;
                Ok(pages::users(&ctx, &users))
            }
            "/account" => {
                let app_passwords =
                    crate::accounts::app_passwords::list(&self.meta, &visit.user.name).await?;
                let enrolled = crate::accounts::totp::enrolled(&self.meta, visit.user.id).await?;
                let pending = visit.session.pending_totp.as_ref();
                Ok(pages::account(&ctx, &app_passwords, enrolled, pending))
            }
            _ => Ok(text(StatusCode::NOT_FOUND, "no such page")),
        }
    }

    async fn console_post(
        &self,
        req: Request<Incoming>,
        visit: Visit,
        rest: &str,
        peer: SocketAddr,
    ) -> Result<Reply, ConsoleError> {
        let form = read_form(req).await?;
        if !session::token_matches(&visit.session.csrf, form.get("csrf")) {
            tracing::warn!(user = %visit.user.name, path = %rest, "console: form without its CSRF token refused");
            return Ok(forbidden(
                "the form is stale or was not sent by this console; reload the page",
            ));
        }
        let sessions = &self.console.sessions;
        let sid = visit.sid.as_str();
        let me = visit.user.name.as_str();
        let flash = |f: Flash| sessions.update(sid, |s| s.flash = Some(f));
        // Every change made here is in the audit log, as the admin API's.
        let actor = Actor {
            name: visit.user.name.clone(),
            source: peer.ip().to_string(),
        };
        match rest {
            "/logout" => {
                sessions.end(sid);
                let mut res = redirect("/admin/login");
                res.headers_mut()
                    .insert(header::SET_COOKIE, self.session_cookie("", true));
                Ok(res)
            }
            "/users/add" | "/users/quota" | "/users/totp-reset" | "/jobs/run"
                if !visit.user.admin =>
            {
                Ok(forbidden("this is for administrators"))
            }
            "/jobs/run" => {
                let job = form.get("job");
                let status = self.jobs.lock().clone();
                if status.is_some_and(|s| s.run_now(job)) {
                    manage::record_job_run(&self.meta, &actor, job).await?;
                    tracing::info!(by = %me, %job, "console: job asked to run");
                    flash(Flash::Done(format!("The {job} job runs now.")));
                } else {
                    flash(Flash::Refused(format!(
                        "no job {job:?} runs on this gateway"
                    )));
                }
                Ok(redirect("/admin/jobs"))
            }
            "/users/add" => {
                let name = form.get("name").trim();
                let given = form.get("password");
                let quota = parse_quota(form.get("quota"));
                let Ok(quota) = quota else {
                    flash(Flash::Refused(format!(
                        "invalid quota {:?}: use a size such as 500M or 10G, or leave it empty",
                        form.get("quota")
                    )));
                    return Ok(redirect("/admin/users"));
                };
                let new = NewAccount {
                    name: name.to_string(),
                    password: (!given.is_empty()).then(|| given.to_string()),
                    admin: form.get("admin") == "on",
                    quota,
                };
                match manage::create(&self.meta, &actor, new).await {
                    Ok(Created {
                        user: u,
                        generated_password,
                    }) => {
                        tracing::info!(by = %me, user = %u.name, "console: user added");
                        flash(match generated_password {
                            Some(password) => Flash::Secret(
                                format!("User {} was added. Their password:", u.name),
                                password,
                            ),
                            None => Flash::Done(format!("User {} was added.", u.name)),
                        });
                    }
                    Err(AdminError::Index(
                        e @ (IndexError::UserExists(_) | IndexError::BadUserName(_)),
                    )) => {
                        flash(Flash::Refused(e.to_string()));
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(redirect("/admin/users"))
            }
            "/users/quota" => {
                let name = form.get("name");
                match parse_quota(form.get("quota")) {
                    Ok(quota) => match manage::change(
                        &self.meta,
                        &actor,
                        name,
                        AccountChange {
                            quota: Some(quota),
                            ..AccountChange::default()
                        },
                    )
                    .await
                    {
                        Ok(_) => {
                            tracing::info!(by = %me, user = %name, ?quota, "console: quota set");
                            flash(Flash::Done(match quota {
                                Some(q) => {
                                    format!("The quota of {name} is now {}.", html::human(q))
                                }
                                None => format!("{name} has no quota now."),
                            }));
                        }
                        Err(AdminError::Index(e @ IndexError::NoSuchUser(_))) => {
                            flash(Flash::Refused(e.to_string()))
                        }
                        Err(e) => return Err(e.into()),
                    },
                    Err(bad) => flash(Flash::Refused(format!(
                        "invalid quota {bad:?}: use a size such as 500M or 10G, or leave it empty"
                    ))),
                }
                Ok(redirect("/admin/users"))
            }
            "/users/totp-reset" => {
                // For a user who lost their authenticator: their next
                // console login needs the password only.
                let name = form.get("name");
                match manage::reset_two_factor(&self.meta, &actor, name).await {
                    Ok(true) => {
                        tracing::info!(by = %me, user = %name, "console: TOTP reset");
                        flash(Flash::Done(format!("Two-factor login of {name} is off.")));
                    }
                    Ok(false) => flash(Flash::Refused(format!("{name} has no two-factor login"))),
                    Err(TotpError::Index(e @ IndexError::NoSuchUser(_))) => {
                        flash(Flash::Refused(e.to_string()));
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(redirect("/admin/users"))
            }
            "/account/app-passwords/add" => {
                let label = form.get("label").trim();
                match manage::create_app_password(&self.meta, &self.console.keys, &actor, me, label)
                    .await
                {
                    Ok(created) => {
                        tracing::info!(user = %me, id = created.info.id, "console: app password created");
                        flash(Flash::Secret(
                            format!("App password \u{201c}{}\u{201d} was created. Enter it in the client instead of your password:", created.info.label),
                            created.secret,
                        ));
                    }
                    Err(
                        e @ (AppPasswordError::BadLabel(_)
                        | AppPasswordError::Index(IndexError::TooManyAppPasswords { .. })),
                    ) => {
                        flash(Flash::Refused(e.to_string()));
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(redirect("/admin/account"))
            }
            "/account/app-passwords/revoke" => {
                let id = form.get("id").parse::<u64>().unwrap_or(0);
                match manage::revoke_app_password(&self.meta, &actor, me, id).await {
                    Ok(()) => {
                        tracing::info!(user = %me, id, "console: app password revoked");
                        flash(Flash::Done("The app password was revoked.".into()));
                    }
                    Err(AppPasswordError::Index(IndexError::NoSuchAppPassword { .. })) => {
                        flash(Flash::Refused("no such app password".into()));
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(redirect("/admin/account"))
            }
            "/account/totp/start" => {
                let secret = crate::accounts::totp::TotpSecret::generate();
                sessions.update(sid, |s| s.pending_totp = Some(secret));
                Ok(redirect("/admin/account#totp"))
            }
            "/account/totp/confirm" => {
                let Some(secret) = visit.session.pending_totp.clone() else {
                    flash(Flash::Refused("start the enrolment first".into()));
                    return Ok(redirect("/admin/account#totp"));
                };
                match crate::accounts::totp::confirm(&self.meta, me, &secret, form.get("code")).await {
                    Ok(()) => {
                        sessions.update(sid, |s| s.pending_totp = None);
                        tracing::info!(user = %me, "console: TOTP enrolled");
                        flash(Flash::Done("Two-factor login is on: the console asks for a code from now on.".into()));
                    }
                    Err(TotpError::WrongCode) => flash(Flash::Refused(
                        "that code is wrong or expired; check the clock of the device and try the current code".into(),
                    )),
                    Err(e) => return Err(e.into()),
                }
                Ok(redirect("/admin/account#totp"))
            }
            "/account/totp/remove" => {
                match crate::accounts::totp::check_login(
                    &self.meta,
                    visit.user.id,
                    form.get("code"),
                )
                .await
                {
                    Ok(()) => {
                        crate::accounts::totp::remove(&self.meta, me).await?;
                        tracing::info!(user = %me, "console: TOTP removed");
                        flash(Flash::Done("Two-factor login is off.".into()));
                    }
                    Err(TotpError::WrongCode) => flash(Flash::Refused(
                        "that code is wrong, expired or already used".into(),
                    )),
                    Err(e) => return Err(e.into()),
                }
                Ok(redirect("/admin/account#totp"))
            }
            _ => Ok(text(StatusCode::NOT_FOUND, "no such form")),
        }
    }
}

/// What the dashboard's charts span: the whole history kept (30 days).
const CHART_SPAN_SECS: i64 = 30 * 24 * 3600;

/// Points drawn per line at most: a month of samples (43,200) is thinned
/// to this many, evenly, keeping the newest.
const CHART_POINTS: usize = 600;

/// Every k-th sample so that at most `max` remain, always with the last.
fn thin(samples: Vec<HistorySample>, max: usize) -> Vec<HistorySample> {
    if samples.len() <= max || max == 0 {
        return samples;
    }
    let k = samples.len().div_ceil(max);
    let last = samples.len() - 1;
    samples
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (last - i).is_multiple_of(k))
        .map(|(_, s)| s)
        .collect()
}

impl RequestTotal for Gateway {
    fn requests_served(&self) -> u64 {
        self.metrics.requests_total()
    }

    fn upstream_latency_totals(&self) -> (u64, u64) {
        self.store
            .backend()
            .upstream_metrics()
            .map_or((0, 0), |m| m.latency_totals())
    }
}

/// An empty quota field means none.
fn parse_quota(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    crate::accounts::parse_size(t)
        .map(Some)
        .map_err(|_| t.to_string())
}

async fn read_form(req: Request<Incoming>) -> Result<Form, ConsoleError> {
    let bytes = body::read_capped(req.into_body(), MAX_FORM_BYTES).await?;
    Ok(Form::parse(&bytes))
}

/// Whether a POST says it comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` that is not this gateway (scheme http or
/// https, and the request's `Host`). A request without either header
/// (not sent by a current browser's cross-site form) passes to the token
/// check.
fn cross_site(headers: &http::HeaderMap) -> bool {
    if headers
        .get("Sec-Fetch-Site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (authority, host) {
        (Some(a), Some(h)) => !a.eq_ignore_ascii_case(h),
        _ => true,
    }
}

/// Turns an error into a page: the cause to the log, a plain message to
/// the browser.
fn settle(res: Result<Reply, ConsoleError>) -> Reply {
    match res {
        Ok(r) => r,
        Err(ConsoleError::Body(e)) => {
            let status = crate::wire::error::body_status(&e);
            let mut res = text(status, "the form could not be read");
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "console: request failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the gateway log has details",
            )
        }
    }
}

fn wrong_login() -> Reply {
    pages::login(
        StatusCode::UNAUTHORIZED,
        Some("wrong user name, password or code"),
    )
}

/// The headers every console page carries: no caching, no script, no
/// framing, nothing loaded from elsewhere. The referrer policy is
/// `same-origin`, not `no-referrer`: under `no-referrer` browsers send
/// `Origin: null` with the page's own form posts, which the origin check
/// must refuse.
fn secure_headers(res: &mut Reply) {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn html_reply(status: StatusCode, body: String) -> Reply {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(&mut res);
    res
}

fn text(status: StatusCode, message: &str) -> Reply {
    let body = html::page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        None,
        &format!(
            "<p>{}</p><p><a href=\"/admin/\">Back to the console</a></p>",
            html::esc(message)
        ),
    );
    html_reply(status, body)
}

fn forbidden(message: &str) -> Reply {
    text(StatusCode::FORBIDDEN, message)
}

fn redirect(to: &'static str) -> Reply {
    let mut res = Response::new(full(""));
    *res.status_mut() = StatusCode::SEE_OTHER;
    res.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    secure_headers(&mut res);
    res
}

fn style_sheet() -> Reply {
    let mut res = Response::new(full(html::STYLE));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        assert!(!cross_site(&headers(&[("host", "gw:8080")])));
        assert!(!cross_site(&headers(&[
            ("host", "gw:8080"),
            ("origin", "http://gw:8080")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "gw:8080"),
            ("origin", "https://GW:8080")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "gw:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "gw:8080"),
            ("origin", "null")
        ])));
        assert!(cross_site(&headers(&[("origin", "http://gw:8080")])));
        assert!(cross_site(&headers(&[
            ("host", "gw"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "gw"),
            ("sec-fetch-site", "same-origin")
        ])));
    }

    #[test]
    fn charts_are_thinned_keeping_the_newest() {
        let s: Vec<HistorySample> = (0..1000)
            .map(|at| HistorySample {
                at,
                ..Default::default()
            })
            .collect();
        let t = thin(s, 600);
        assert!(t.len() <= 600 && t.len() >= 300, "{}", t.len());
        assert_eq!(t.last().map(|s| s.at), Some(999));
        assert_eq!(thin(vec![HistorySample::default()], 600).len(), 1);
    }

    #[test]
    fn quotas() {
        assert_eq!(parse_quota(""), Ok(None));
        assert_eq!(parse_quota(" 10M "), Ok(Some(10 << 20)));
        assert!(parse_quota("lots").is_err());
    }
}
