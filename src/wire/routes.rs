//! Which part of the gateway a request path belongs to.

use percent_encoding::percent_decode_str;

pub const FILES_PREFIX: &str = "/remote.php/dav/files/";
pub const WEBDAV_PREFIX: &str = "/remote.php/webdav";
pub const UPLOADS_PREFIX: &str = "/remote.php/dav/uploads/";
pub const ADMIN_PREFIX: &str = "/api/v1";

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: a page for people.
    Home,
    /// `/status.php`.
    Status,
    /// `/ocs/v1.php/...` or `/ocs/v2.php/...`: (version, rest of the path).
    Ocs {
        v2: bool,
        rest: String,
    },
    /// `/metrics` (Prometheus).
    Metrics,
    /// `/api/v1/...`: the admin API; `rest` is the raw path after
    /// `/api/v1` (empty or starting with `/`).
    Admin {
        rest: String,
    },
    /// A user's tree. `user` is the decoded name in the URL (None for the
    /// `/remote.php/webdav` form, which means "the authenticated user");
    /// `prefix` is the raw path prefix to strip.
    Dav {
        user: Option<String>,
        prefix: String,
    },
    /// `/remote.php/dav/uploads/<user>/...`: chunked uploads. `user` is
    /// decoded; `rest` is the raw path after the user segment.
    Uploads {
        user: String,
        rest: String,
    },
    /// `/admin` and `/admin/...`: the web console; `rest` is the raw path
    /// after `/admin` (`""` or starting with `/`).
    Console {
        rest: String,
    },
    NotFound,
}

/// Classifies a raw (still percent-encoded) request path.
pub fn route(path: &str) -> Route {
    match path {
        "/" | "" | "/index.html" => return Route::Home,
        "/status.php" => return Route::Status,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix(ADMIN_PREFIX) {
        if rest.is_empty() || rest.starts_with('/') {
            return Route::Admin {
                rest: rest.to_string(),
            };
        }
    }
    if let Some(rest) = path.strip_prefix("/admin") {
        if rest.is_empty() || rest.starts_with('/') {
            return Route::Console {
                rest: rest.to_string(),
            };
        }
    }
    for (p, v2) in [("/ocs/v1.php/", false), ("/ocs/v2.php/", true)] {
        if let Some(rest) = path.strip_prefix(p) {
            return Route::Ocs {
                v2,
                rest: rest.to_string(),
            };
        }
    }
    if path == WEBDAV_PREFIX || path.starts_with("/remote.php/webdav/") {
        return Route::Dav {
            user: None,
            prefix: WEBDAV_PREFIX.to_string(),
        };
    }
    if let Some(rest) = path.strip_prefix(UPLOADS_PREFIX) {
        let (seg, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if seg.is_empty() {
            return Route::NotFound;
        }
        return Route::Uploads {
            user: percent_decode_str(seg).decode_utf8_lossy().into_owned(),
            rest: format!("/{tail}"),
        };
    }
    if let Some(rest) = path.strip_prefix(FILES_PREFIX) {
        let seg = rest.split('/').next().unwrap_or("");
        if seg.is_empty() {
            return Route::NotFound;
        }
        let user = percent_decode_str(seg).decode_utf8_lossy().into_owned();
        return Route::Dav {
            user: Some(user),
            prefix: format!("{FILES_PREFIX}{seg}"),
        };
    }
    Route::NotFound
}

/// Where a `Destination` header points, relative to the tree of `user`.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    /// Inside the user's own tree: the path below the tree root (raw).
    Own(String),
    /// Anywhere else (another user's tree, another server, nonsense).
    Elsewhere,
}

/// Resolves a `Destination` header (absolute URL or path-only) for `user`.
pub fn destination(value: &str, user: &str) -> Destination {
    let path = match value.find("://") {
        Some(i) => match value[i + 3..].find('/') {
            Some(j) => &value[i + 3 + j..],
            None => "/",
        },
        None => value,
    };
    if let Route::Dav { user: u, prefix } = route(path) {
        if u.as_deref().is_none_or(|u| u == user) {
            let rest = &path[prefix.len()..];
            return Destination::Own(if rest.is_empty() {
                "/".into()
            } else {
                rest.into()
            });
        }
    }
    Destination::Elsewhere
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/api/v1/users/bob"),
            Route::Admin {
                rest: "/users/bob".into()
            }
        );
        assert_eq!(route("/api/v1"), Route::Admin { rest: "".into() });
        assert_eq!(route("/api/v10"), Route::NotFound);
        assert_eq!(route("/"), Route::Home);
        assert_eq!(
            route("/remote.php/dav/files/al%40ice/x/y"),
            Route::Dav {
                user: Some("al@ice".into()),
                prefix: "/remote.php/dav/files/al%40ice".into()
            }
        );
        assert_eq!(
            route("/remote.php/webdav/a"),
            Route::Dav {
                user: None,
                prefix: "/remote.php/webdav".into()
            }
        );
        assert_eq!(route("/remote.php/dav/files/"), Route::NotFound);
        assert_eq!(route("/remote.php/webdavx"), Route::NotFound);
        assert!(matches!(
            route("/ocs/v2.php/cloud/user"),
            Route::Ocs { v2: true, .. }
        ));
        assert_eq!(
            route("/remote.php/dav/uploads/al%40ice/123/0000000000000000"),
            Route::Uploads {
                user: "al@ice".into(),
                rest: "/123/0000000000000000".into()
            }
        );
        assert_eq!(
            route("/remote.php/dav/uploads/bob"),
            Route::Uploads {
                user: "bob".into(),
                rest: "/".into()
            }
        );
        assert_eq!(route("/remote.php/dav/uploads/"), Route::NotFound);
        assert_eq!(route("/admin"), Route::Console { rest: "".into() });
        assert_eq!(
            route("/admin/users"),
            Route::Console {
                rest: "/users".into()
            }
        );
        assert_eq!(route("/administrator"), Route::NotFound);
    }

    #[test]
    fn destinations() {
        assert_eq!(
            destination("http://h:1/remote.php/dav/files/a/x%20y", "a"),
            Destination::Own("/x%20y".into())
        );
        assert_eq!(
            destination("/remote.php/webdav/d/", "a"),
            Destination::Own("/d/".into())
        );
        assert_eq!(
            destination("/remote.php/dav/files/b/x", "a"),
            Destination::Elsewhere
        );
        assert_eq!(
            destination("/remote.php/dav/files/a%2f..%2fb/x", "a"),
            Destination::Elsewhere
        );
        assert_eq!(destination("/etc/passwd", "a"), Destination::Elsewhere);
    }
}
