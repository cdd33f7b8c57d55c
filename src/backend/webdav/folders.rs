//! The upstream folders above the objects (`<root>/objects/ab/`): created
//! lazily with MKCOL before the first PUT into them, and remembered for the
//! life of the process, so a new object costs one MKCOL at most per fan-out
//! folder (docs/ARCHITECTURE.md, "Upstream layout", measured why there is
//! one level of them). A folder that vanishes upstream is noticed by the PUT
//! (404/409) and created again. Concurrent creators of one folder take
//! turns, because Apache answers the loser of a MKCOL race with 403.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};
use tracing::debug;

use super::multistatus::parse_multistatus;
use super::retry::Failure;
use super::{propfind, WebDavStore, PROPFIND_BODY};
use crate::backend::metrics::Verb;
use crate::backend::BackendError;
use crate::crypto::ObjectName;

/// What this process knows about the upstream folders.
#[derive(Default)]
pub(super) struct FolderCache {
    /// Folders (relative to the account root) known to exist.
    created: Mutex<HashSet<String>>,
    /// One gate per folder being created right now.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl WebDavStore {
    /// The folders (relative to the account root) above an object.
    pub(super) fn dirs_of(&self, name: &ObjectName) -> Vec<String> {
        let root = self.root.join("/");
        let mut dirs = self.root_dirs();
        dirs.extend(name.fanout_dirs().iter().map(|d| format!("{root}/{d}")));
        dirs
    }

    /// The root folder and its parents, outermost first.
    pub(super) fn root_dirs(&self) -> Vec<String> {
        (1..=self.root.len())
            .map(|n| self.root[..n].join("/"))
            .collect()
    }

    /// Creates the missing folders of `dirs` (outermost first) with MKCOL,
    /// remembering which exist.
    pub(super) async fn ensure_dirs(&self, dirs: &[String]) -> Result<(), BackendError> {
        let mut restarted = false;
        let mut i = 0;
        while i < dirs.len() {
            let dir = &dirs[i];
            i += 1;
            if self.folders.created.lock().contains(dir) {
                continue;
            }
            if self.create_dir(dir).await? {
                continue;
            }
            if restarted {
                return Err(self.permanent(format!(
                    "MKCOL {dir}/ keeps answering 409 Conflict: a parent folder cannot be created"
                )));
            }
            debug!(upstream = %self.display, "MKCOL {dir}/: parent missing, re-creating the chain");
            self.forget_dirs(dirs);
            restarted = true;
            i = 0;
        }
        Ok(())
    }

    /// Creates one folder unless it is known to exist; `Ok(false)` when its
    /// parent is missing. Concurrent callers for the same folder wait for
    /// one another instead of racing (Apache answers a MKCOL that loses such
    /// a race with 403).
    async fn create_dir(&self, dir: &str) -> Result<bool, BackendError> {
        let gate = self
            .folders
            .inflight
            .lock()
            .entry(dir.to_string())
            .or_default()
            .clone();
        let result = {
            let _turn = gate.lock().await;
            if self.folders.created.lock().contains(dir) {
                Ok(true)
            } else {
                let r = self.mkcol(dir).await;
                if matches!(r, Ok(true)) {
                    self.folders.created.lock().insert(dir.to_string());
                }
                r
            }
        };
        let mut inflight = self.folders.inflight.lock();
        // Clones are only taken under this lock, so the count is stable here:
        // 2 means nobody else is waiting for this folder.
        if inflight.get(dir).is_some_and(|g| Arc::ptr_eq(g, &gate)) && Arc::strong_count(&gate) == 2
        {
            inflight.remove(dir);
        }
        result
    }

    async fn mkcol(&self, dir: &str) -> Result<bool, BackendError> {
        let url = self.account_url(dir.split('/'), true);
        let what = format!("MKCOL {dir}/");
        // Apache answers the loser of a MKCOL race with 403, sometimes before
        // the winner's folder is visible: a few such answers are retried.
        let races = std::sync::atomic::AtomicU32::new(0);
        self.with_retries(Verb::Mkcol, &what, self.retry_deadline, || async {
            let resp = self
                .request(mkcol(), url.clone())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            match resp.status().as_u16() {
                // 405: the folder is already there.
                200 | 201 | 204 | 405 => Ok(true),
                // 409: a parent vanished since we created it.
                409 => Ok(false),
                // Another client may have created it at the same moment.
                403 if self.is_folder(&url).await => Ok(true),
                403 if races.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 => {
                    Err(Failure::Retry(
                        BackendError::Transient {
                            backend: self.display.clone(),
                            cause: format!(
                                "{what} answered 403 while another client may be creating it"
                            ),
                        },
                        None,
                    ))
                }
                _ => Err(self.status_failure(&what, &resp)),
            }
        })
        .await
    }

    /// Whether a PROPFIND Depth 0 shows a folder at `url` (one attempt).
    async fn is_folder(&self, url: &Url) -> bool {
        let resp = self
            .request(propfind(), url.clone())
            .header("Depth", "0")
            .header(CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(PROPFIND_BODY)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().as_u16() == 207 => match r.bytes().await {
                Ok(body) => {
                    parse_multistatus(&body).is_ok_and(|e| e.iter().any(|e| e.is_collection))
                }
                Err(_) => false,
            },
            _ => false,
        }
    }

    pub(super) fn forget_dirs(&self, dirs: &[String]) {
        let mut created = self.folders.created.lock();
        for d in dirs {
            created.remove(d);
        }
    }
}

fn mkcol() -> Method {
    Method::from_bytes(b"MKCOL").unwrap_or_else(|_| unreachable!())
}
