//! The MQTT packet reader on arbitrary broker bytes: it must return packets of
//! at most its cap or an error, never panic and never buffer what the broker
//! merely announces.
#![no_main]

use edgevlm_device::events::{read_packet, MAX_INCOMING};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut pending = bytes::BytesMut::new();
    while read_packet(&mut rest, &mut pending, MAX_INCOMING).is_ok() {
        assert!(pending.len() <= MAX_INCOMING + 5 + 256);
    }
});
