//! Every message a node, a peer or the origin may send, decoded from arbitrary bytes: decoding
//! never panics, and what decodes encodes back to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_kv::protocol::{decode, encode};
use outpost_kv::{Entry, FromOrigin, PeerMsg, ToOrigin};

fn round_trips<T>(bytes: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(message) = decode::<T>(bytes) {
        let again: T = decode(&encode(&message)).expect("an encoded message decodes");
        assert_eq!(again, message);
    }
}

fuzz_target!(|bytes: &[u8]| {
    round_trips::<FromOrigin>(bytes);
    round_trips::<ToOrigin>(bytes);
    round_trips::<PeerMsg>(bytes);
    round_trips::<Entry>(bytes);
    let _ = outpost_kv::model::decode_key_info(bytes);
});
