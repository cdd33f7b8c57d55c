//! rclone (ownCloud and Nextcloud vendors), cadaver and a davfs2 mount
//! against the gateway, each driven as a person would.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use crate::common::gateway::{random_bytes, TestGateway};

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what} is not installed ({e}): run the README test command, which installs it")
    });
    assert_ne!(out.status.code(), Some(127), "{what} is not installed");
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

// ---------------------------------------------------------------- rclone

fn obscure(password: &str) -> String {
    let out = run(Command::new("rclone").args(["obscure", password]), "rclone");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rclone(
    gw: &TestGateway,
    vendor: &str,
    user: &str,
    pass_obscured: &str,
    args: &[&str],
) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["600", "rclone"])
        .args(args)
        .args(["--config", "/dev/null", "--webdav-vendor", vendor])
        .arg(format!(
            "--webdav-url={}/remote.php/dav/files/{user}/",
            gw.base
        ))
        .arg(format!("--webdav-user={user}"))
        .arg(format!("--webdav-pass={pass_obscured}"))
        .args(["--retries", "1", "--low-level-retries", "2"]);
    run(&mut cmd, "rclone")
}

fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .expect("set mtime");
}

fn mtime(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Copies a tree with a large file up and back with one rclone vendor:
/// `rclone check` finds no difference, bytes and mtimes survive.
fn rclone_round_trip(vendor: &str, big: usize) {
    let gw = TestGateway::start();
    gw.add_user("rita", "rita-pw");
    let pass = obscure("rita-pw");
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    let back = work.path().join("back");
    std::fs::create_dir_all(src.join("nested dir/ünï")).expect("mkdir");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("big.bin", random_bytes(big, 11)),
        ("small & odd #1.txt", b"small\n".to_vec()),
        ("100% sure.txt", b"percent\n".to_vec()),
        ("nested dir/ünï/emoji 😀.txt", "😀\n".as_bytes().to_vec()),
        ("nested dir/empty", Vec::new()),
    ];
    for (i, (name, data)) in files.iter().enumerate() {
        let p = src.join(name);
        std::fs::write(&p, data).expect("write");
        set_mtime(&p, 1_500_000_000 + i as u64 * 1000);
    }
    let remote = format!(":webdav:{vendor}-copy");

    let out = rclone(
        &gw,
        vendor,
        "rita",
        &pass,
        &["copy", src.to_str().unwrap(), &remote],
    );
    assert!(
        out.status.success(),
        "rclone copy up failed:\n{}",
        text(&out)
    );

    let out = rclone(
        &gw,
        vendor,
        "rita",
        &pass,
        &["check", src.to_str().unwrap(), &remote],
    );
    let log = text(&out);
    assert!(
        out.status.success(),
        "rclone check found differences:\n{log}"
    );
    assert!(log.contains("0 differences found"), "{log}");
    if vendor == "owncloud" {
        // The gateway lists SHA1/MD5 checksums, so rclone compares hashes,
        // not just sizes.
        assert!(!log.contains("No common hash"), "{log}");
        let out = rclone(
            &gw,
            vendor,
            "rita",
            &pass,
            &["hashsum", "SHA1", &format!("{remote}/small & odd #1.txt")],
        );
        assert!(
            text(&out).contains(&sha1_hex(b"small\n")),
            "rclone did not read the SHA1 from oc:checksums: {}",
            text(&out)
        );
    }

    let out = rclone(
        &gw,
        vendor,
        "rita",
        &pass,
        &["copy", &remote, back.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "rclone copy down failed:\n{}",
        text(&out)
    );
    for (name, data) in &files {
        let got = std::fs::read(back.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name} came back different");
        assert_eq!(
            mtime(&back.join(name)),
            mtime(&src.join(name)),
            "{name}: modification time not preserved"
        );
    }
}

fn sha1_hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(data))
}

#[test]
fn rclone_owncloud_vendor_round_trip() {
    rclone_round_trip("owncloud", 200 * 1024 * 1024);
}

#[test]
fn rclone_nextcloud_vendor_round_trip() {
    rclone_round_trip("nextcloud", 200 * 1024 * 1024);
}

// ---------------------------------------------------------------- cadaver

#[test]
fn cadaver_scripted_session() {
    let gw = TestGateway::start();
    gw.add_user("cady", "cady-pw");
    let home = tempfile::tempdir().expect("temp dir");
    let netrc = home.path().join(".netrc");
    std::fs::write(&netrc, "machine 127.0.0.1 login cady password cady-pw\n").expect("netrc");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    std::fs::write(home.path().join("local.txt"), b"local content\n").expect("write");
    let script = "mkcol docs\n\
                  put local.txt docs/a.txt\n\
                  get docs/a.txt back.txt\n\
                  move docs/a.txt docs/b.txt\n\
                  copy docs/b.txt docs/c.txt\n\
                  delete docs/c.txt\n\
                  propget docs/b.txt\n\
                  ls docs\n\
                  quit\n";
    let script_path = home.path().join("script");
    std::fs::write(&script_path, script).expect("script");
    let out = run(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "timeout 60 cadaver {}/remote.php/dav/files/cady/ < script",
                gw.base
            ))
            .current_dir(home.path())
            .env("HOME", home.path()),
        "cadaver",
    );
    let log = text(&out);
    assert!(out.status.success(), "cadaver failed:\n{log}");
    for step in [
        "Creating `docs': succeeded.",
        "to `/remote.php/dav/files/cady/docs/a.txt': [.. succeeded.",
        "to back.txt: [.. succeeded.",
        "to `/remote.php/dav/files/cady/docs/b.txt':  succeeded.",
        "to `/remote.php/dav/files/cady/docs/c.txt':  succeeded.",
        "Deleting `docs/c.txt': succeeded.",
        "DAV: getcontentlength = 14",
        "Listing collection `/remote.php/dav/files/cady/docs/': succeeded.",
    ] {
        assert!(log.contains(step), "missing {step:?} in:\n{log}");
    }
    // The entity tag is listed quoted, as RFC 4918 wants.
    assert!(log.contains("DAV: getetag = \""), "{log}");
    assert_eq!(
        std::fs::read(home.path().join("back.txt")).expect("downloaded"),
        b"local content\n"
    );
    let dav = gw.client("cady", "cady-pw");
    assert_eq!(dav.get_bytes("docs/b.txt").unwrap(), b"local content\n");
    assert_eq!(dav.get("docs/a.txt").status().as_u16(), 404);
    assert_eq!(dav.get("docs/c.txt").status().as_u16(), 404);
}

// ---------------------------------------------------------------- davfs2

#[test]
fn davfs2_mount_write_list_read() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: /dev/fuse is missing, so davfs2 cannot mount here");
        return;
    }
    let gw = TestGateway::start();
    gw.add_user("dave", "dave-pw");
    let work = tempfile::tempdir().expect("temp dir");
    let mnt = work.path().join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let url = format!("{}/remote.php/dav/files/dave/", gw.base);
    let secrets = work.path().join("secrets");
    std::fs::write(&secrets, format!("{url} dave dave-pw\n")).expect("secrets");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    // Without `buf_size 64` davfs2 1.6 cannot list on this kernel.
    let conf = work.path().join("davfs2.conf");
    std::fs::write(
        &conf,
        format!("buf_size 64\nsecrets {}\nask_auth 0\n", secrets.display()),
    )
    .expect("conf");
    let out = run(
        Command::new("timeout")
            .args(["60", "mount.davfs", "-o"])
            .arg(format!("conf={}", conf.display()))
            .arg(&url)
            .arg(&mnt),
        "davfs2 (mount.davfs)",
    );
    assert!(out.status.success(), "mount.davfs failed:\n{}", text(&out));
    let unmount = |mnt: &Path| {
        let out = run(
            Command::new("timeout").args(["120", "umount"]).arg(mnt),
            "umount",
        );
        assert!(out.status.success(), "umount failed:\n{}", text(&out));
    };

    let data = random_bytes(3 * 1024 * 1024 + 17, 5);
    let result = std::panic::catch_unwind(|| {
        std::fs::create_dir(mnt.join("from davfs")).expect("mkdir on the mount");
        std::fs::write(mnt.join("from davfs/hello world.txt"), b"hello davfs\n")
            .expect("write small");
        std::fs::write(mnt.join("from davfs/random.bin"), &data).expect("write big");
        let mut names: Vec<String> = std::fs::read_dir(mnt.join("from davfs"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["hello world.txt", "random.bin"]);
        assert_eq!(
            std::fs::read(mnt.join("from davfs/random.bin")).expect("read back"),
            data
        );
    });
    unmount(&mnt);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    // After the unmount, everything is on the gateway.
    let dav = gw.client("dave", "dave-pw");
    assert_eq!(
        dav.get_bytes("from%20davfs/hello%20world.txt").unwrap(),
        b"hello davfs\n"
    );
    assert!(dav.get_bytes("from%20davfs/random.bin").unwrap() == data);
}
