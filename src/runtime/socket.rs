//! Empty: the ends of a worker's channel are `transport::{Reader, Writer}`. (Declared in
//! `runtime/mod.rs`, which drops it with its next change.)
