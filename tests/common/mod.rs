//! Shared harnesses for integration tests: the gateway in-process, a real
//! Apache WebDAV upstream, and a fault-injecting proxy to put in front of it.
#![allow(dead_code, unused_macros)]

/// Runs each scenario (a `fn(TestGateway)` in the calling file) on the embedded defaults and against a real Apache
/// WebDAV upstream.
macro_rules! on_both_backends {
    ($($name:ident),*) => {
        mod local {
            $(#[test] fn $name() { super::$name(super::TestGateway::start()) })*
        }
        mod upstream {
            $(#[test] fn $name() { super::$name(super::TestGateway::start_on_apache()) })*
        }
    };
}

pub mod apache;
pub mod faultproxy;
pub mod gateway;

/// The `dedupdav` binary, without any `DEDUPDAV_*` setting of the test
/// environment leaking into it.
pub fn dedupdav_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dedupdav"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DEDUPDAV_") {
            c.env_remove(k);
        }
    }
    c
}
