//! Every frame of the cluster link, read from arbitrary bytes as each message a stream carries
//! (the opening frame, blob replies, desired states and node reports, tail sets and batches):
//! reading never panics nor allocates past the frame limit, and what reads writes back to
//! a frame that reads the same.
#![no_main]

use std::fmt::Debug;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_core::wire::{
    BlobReply, DesiredState, LogBatch, NodeReport, Open, TailSet, read_frame, write_frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

async fn round_trips<T>(bytes: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let mut reader = bytes;
    // A stream of frames: read until the bytes end or stop making sense.
    while let Ok(Some(message)) = read_frame::<_, T>(&mut reader).await {
        let mut written = Vec::new();
        write_frame(&mut written, &message)
            .await
            .expect("what was read writes");
        let again: T = read_frame(&mut written.as_slice())
            .await
            .expect("what was written reads")
            .expect("one frame");
        assert_eq!(again, message);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    runtime().block_on(async {
        match kind % 6 {
            0 => round_trips::<Open>(bytes).await,
            1 => round_trips::<BlobReply>(bytes).await,
            2 => round_trips::<DesiredState>(bytes).await,
            3 => round_trips::<NodeReport>(bytes).await,
            4 => round_trips::<TailSet>(bytes).await,
            _ => round_trips::<LogBatch>(bytes).await,
        }
    });
});
