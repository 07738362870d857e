//! Feed arbitrary bytes to the frame decoder, split where the input says,
//! and every body it yields to every body parser. Nothing may panic, and
//! the buffer may never grow past the frame limit plus what was fed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mercato_protocol::*;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let d = FrameDecoder { frame_bytes_max: 4096 };
    let mut buf = BytesMut::new();
    let step = usize::from(split).max(1);
    for chunk in bytes.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => {
                    let _ = Hello::from_body(&f.body);
                    let _ = Welcome::from_body(&f.body);
                    let _ = Requests::from_body(&f.body);
                    let _ = Answers::from_body(&f.body);
                    let _ = ErrorBody::from_body(&f.body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= 4096 + HEADER_BYTES + bytes.len());
    }
});
