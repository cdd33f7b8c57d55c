//! A real Apache httpd with mod_dav, started per test as the upstream
//! ownCloud stand-in: WebDAV at `/remote.php/dav/files/<user>/`, Basic auth
//! from a generated password file, everything (config, logs, lock database,
//! data) in its own temporary directory. The server runs in the foreground
//! with the event MPM in its own process group, which is killed on drop.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use sha1::{Digest, Sha1};

const APACHE_BIN: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
const NEEDED_MODULES: &[(&str, &str)] = &[
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authn_file_module", "mod_authn_file.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("auth_basic_module", "mod_auth_basic.so"),
    ("alias_module", "mod_alias.so"),
    ("dav_module", "mod_dav.so"),
    ("dav_fs_module", "mod_dav_fs.so"),
];

/// The service account every harness instance serves.
pub const SERVICE_USER: &str = "svc";

pub struct Apache {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
}

impl Apache {
    /// Starts a server on a free loopback port and waits until it accepts
    /// connections. Panics (never skips) when apache2 is missing or fails.
    pub fn start() -> Self {
        assert_installed();
        let mut last_err = String::new();
        // A port picked free can be taken before Apache binds it: try again.
        for _ in 0..5 {
            match Self::try_start() {
                Ok(a) => return a,
                Err(e) => last_err = e,
            }
        }
        panic!("apache2 did not start: {last_err}");
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("dedupdav-apache-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = dir.path();
        let data = root.join("data");
        let lock = root.join("lock");
        let run = root.join("run");
        for d in [&data, &lock, &run] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let digest =
            base64::engine::general_purpose::STANDARD.encode(Sha1::digest(password.as_bytes()));
        let htpasswd = root.join("htpasswd");
        std::fs::write(&htpasswd, format!("{SERVICE_USER}:{{SHA}}{digest}\n"))
            .map_err(|e| e.to_string())?;

        let port = free_port();
        let run_as = if is_root() {
            Some(unprivileged_user())
        } else {
            None
        };
        if let Some((_, uid, gid)) = &run_as {
            // The workers run unprivileged: they need the temp dir, the data
            // and the lock database; the password file only has to be
            // readable (it is read by the workers too).
            for p in [root, &data, &lock, &htpasswd] {
                std::os::unix::fs::chown(p, Some(*uid), Some(*gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let mut conf = String::new();
        for (name, file) in NEEDED_MODULES {
            conf.push_str(&format!("LoadModule {name} {MODULES}/{file}\n"));
        }
        if let Some((user, _, gid)) = &run_as {
            conf.push_str(&format!("User {user}\nGroup #{gid}\n"));
        }
        let r = root.display();
        conf.push_str(&format!(
            r#"ServerRoot "{r}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{r}/run/httpd.pid"
DefaultRuntimeDir "{r}/run"
ErrorLog "{r}/error.log"
LogLevel warn
StartServers 1
ServerLimit 2
ThreadLimit 16
ThreadsPerChild 16
MaxRequestWorkers 32
MinSpareThreads 1
MaxSpareThreads 32
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
Timeout 30
LimitRequestBody 0
DavLockDB "{r}/lock/DavLock"

Alias /remote.php/dav/files/{SERVICE_USER}/ "{r}/data/"
<Directory "{r}/data">
    Dav On
    AuthType Basic
    AuthName "dedupdav test upstream"
    AuthBasicProvider file
    AuthUserFile "{r}/htpasswd"
    Require valid-user
    Options None
    AllowOverride None
</Directory>
"#
        ));
        let conf_path = root.join("httpd.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let out = std::fs::File::create(root.join("stderr.log")).map_err(|e| e.to_string())?;
        let out2 = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(APACHE_BIN)
            .arg("-d")
            .arg(root)
            .arg("-f")
            .arg(&conf_path)
            .arg("-DFOREGROUND")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(out2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {APACHE_BIN}: {e}"))?;

        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("apache2 exited with {status}: {}", logs(root)));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                kill_group(&mut child);
                return Err(format!("apache2 did not listen within 20s: {}", logs(root)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child,
            dir,
            port,
            password,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The service account's WebDAV root, ending in `/`.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.origin(), Self::base_path())
    }

    /// `/remote.php/dav/files/<user>/`.
    pub fn base_path() -> String {
        format!("/remote.php/dav/files/{SERVICE_USER}/")
    }

    pub fn user(&self) -> &str {
        SERVICE_USER
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory the account's files live in.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Apache's error log and output so far, for assertion messages.
    pub fn logs(&self) -> String {
        logs(self.dir.path())
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

fn logs(root: &Path) -> String {
    let mut s = String::new();
    for f in ["stderr.log", "error.log"] {
        if let Ok(mut file) = std::fs::File::open(root.join(f)) {
            let _ = file.read_to_string(&mut s);
        }
    }
    s
}

/// SIGTERM to the whole group (parent and workers), SIGKILL if it lingers.
fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            // Workers may outlive the parent by a moment.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}

fn assert_installed() {
    let missing: Vec<String> = std::iter::once(PathBuf::from(APACHE_BIN))
        .chain(
            NEEDED_MODULES
                .iter()
                .map(|(_, f)| Path::new(MODULES).join(f)),
        )
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        panic!(
            "apache2 is not installed: run the README test command (apt-get install -y apache2 apache2-utils); \
             missing: {}",
            missing.join(", ")
        );
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The account Apache's workers run as when started by root.
fn unprivileged_user() -> (String, u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["www-data", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == wanted {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    return (wanted.to_string(), uid, gid);
                }
            }
        }
    }
    panic!("running as root, but neither www-data nor nobody exists to run apache2's workers");
}
