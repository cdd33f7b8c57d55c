//! Shared harness for integration tests: a real Apache WebDAV upstream and a
//! fault-injecting proxy to put in front of it.
#![allow(dead_code)]

pub mod apache;
pub mod faultproxy;
