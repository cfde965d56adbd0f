//! The agent's frame decoder on arbitrary link bytes: raw (as they arrive), and
//! wrapped in a valid length + CRC so the message parser itself is reached.
//! Anything decoded must re-encode to a frame that decodes to the same message.
#![no_main]

use edgevlm_shared::wire::{decode_payload, encode_frame, read_message, Request, Response};
use libfuzzer_sys::fuzz_target;

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame
}

fuzz_target!(|data: &[u8]| {
    let _ = read_message::<Request>(&mut &data[..]);
    let _ = read_message::<Response>(&mut &data[..]);
    let frame = framed(data);
    if let Ok(request) = decode_payload::<Request>(&frame) {
        let again: Request = decode_payload(&encode_frame(&request)).expect("re-encoded request decodes");
        assert_eq!(again, request);
    }
    if let Ok(response) = decode_payload::<Response>(&frame) {
        let again: Response = decode_payload(&encode_frame(&response)).expect("re-encoded response decodes");
        assert_eq!(again, response);
    }
});
