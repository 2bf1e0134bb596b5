//! Helpers shared by the integration tests of `berth-codec`. Each test file includes this module
//! with `mod support;`; Cargo builds only the `tests/*.rs` files as test binaries, so this folder
//! is no test of its own.
//!
//! - `malformed`: the assertions of `malformed.rs`, `malformed_packets.rs` and `malformed_v5.rs`
//!   (the exact `DecodeError`, its `kind()` and the reason code a server answers with);
//! - `spec`: the byte-table helpers of `spec_bytes.rs`, `spec_bytes_v5.rs` and
//!   `spec_bytes_v5_control.rs` (and the constructors `roundtrip/seeds.rs` builds packets with).

// Every test binary compiles its own copy of this module and uses only some of it (the
// `spec_bytes*` files none of `malformed`, the `malformed*` files none of `spec`, `malformed_v5.rs`
// not `connect_v311`, `roundtrip.rs` only `frame` and four constructors), so rustc would report
// the rest as dead code in each of them.
#![allow(dead_code)]

pub mod malformed;
pub mod spec;

/// A packet: first byte, remaining length (computed), body.
pub fn frame(first: u8, body: &[&[u8]]) -> Vec<u8> {
    let body = body.concat();
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&body);
    out
}
