//! The MQTT packet reader on arbitrary broker bytes: it must return a packet of
//! at most its cap or an error, never panic and never allocate what the broker
//! merely announces.
#![no_main]

use edgevlm_device::events::{read_packet, MAX_INCOMING};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((_, body)) = read_packet(&mut rest, MAX_INCOMING) {
        assert!(body.len() <= MAX_INCOMING);
    }
});
