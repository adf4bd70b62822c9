//! Fuzzes the frame codec with raw datagrams.
//!
//! Properties: decoding never panics; a datagram that decodes re-encodes to bytes that
//! decode to the same frame, and (outside the two normalised forms) to the same bytes;
//! the owned copy equals the borrowed frame. The discovery-reply decoders never panic.
//!
//! Run: see flock-proto/README.md (`RUSTC_BOOTSTRAP=1 cargo fuzz run decode`).
#![no_main]

use flock_proto::{AnswerTo, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flock_proto::decode_discover_reply(data);
    let _ = flock_proto::decode_discover_server_reply(data);

    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let encoded = frame.encode_to_vec();
    let again = Frame::decode(&encoded).expect("an encoded frame decodes");
    assert_eq!(again, frame, "decode(encode(frame)) != frame");

    let normalised = matches!(frame, Frame::Ring(_))
        || matches!(
            frame,
            Frame::ForwardRegister {
                answer: AnswerTo::Nobody,
                ..
            }
        );
    if !normalised {
        assert_eq!(encoded, data, "re-encoding changed the bytes");
    }
    assert_eq!(frame.clone().into_owned(), frame);
});
