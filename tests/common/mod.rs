//! Shared harnesses for integration tests: the gateway in-process, a real
//! Apache WebDAV upstream, and a fault-injecting proxy to put in front of it.
#![allow(dead_code)]

pub mod apache;
pub mod faultproxy;
pub mod gateway;
