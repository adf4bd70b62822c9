//! Fuzzes the frame codec with raw datagrams, client and ring grammars alike.
//!
//! Properties: decoding never panics; a datagram that decodes re-encodes to bytes that
//! decode to the same frame, and (outside the one normalised form, the forwarded
//! `REGISTER . .`) to the same bytes; the owned copy equals the borrowed frame; a ring
//! frame's `encoded_len` is exact. Every input is also tried as the text after `RING `,
//! so the ring grammar is fuzzed without the fuzzer first having to find the prefix. The
//! discovery-reply decoders never panic.
//!
//! Run: see flock-proto/README.md (`RUSTC_BOOTSTRAP=1 cargo fuzz run decode`).
#![no_main]

use flock_proto::{AnswerTo, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flock_proto::decode_discover_reply(data);
    let _ = flock_proto::decode_discover_server_reply(data);

    check(data);
    let mut ring = b"RING ".to_vec();
    ring.extend_from_slice(data);
    check(&ring);
});

fn check(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let encoded = frame.encode_to_vec();
    let again = Frame::decode(&encoded).expect("an encoded frame decodes");
    assert_eq!(again, frame, "decode(encode(frame)) != frame");

    let normalised = matches!(
        frame,
        Frame::ForwardRegister {
            answer: AnswerTo::Nobody,
            ..
        }
    );
    if !normalised {
        assert_eq!(encoded, data, "re-encoding changed the bytes");
    }
    if let Frame::Ring(ring) = &frame {
        assert_eq!(ring.encoded_len(), encoded.len(), "encoded_len is not exact");
    }
    assert_eq!(frame.clone().into_owned(), frame);
}
