use outpost_core::test_support::postgres::TestPostgres;
use outpost_core::test_support::temp_dir;

use super::*;

/// Both engines, the database one on a throwaway server held as long as the test runs.
async fn engines(label: &str) -> (Vec<Components>, TestPostgres) {
    let server = TestPostgres::start(label);
    let db = Arc::new(Database::connect(&server.url()).await.unwrap());
    let files = BlobStore::open(&temp_dir(label)).unwrap();
    (
        vec![Components::Files(files), Components::in_database(db)],
        server,
    )
}

#[tokio::test]
async fn a_component_is_stored_once_under_its_hash_and_read_back_whole() {
    let (engines, _server) = engines("components").await;
    // Larger than a chunk, and not a multiple of one.
    let bytes: Vec<u8> = (0..(2 << 20) + 12_345)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    for components in engines {
        let sha = sha256_hex(&bytes);
        assert!(!components.contains(&sha).await.unwrap());
        assert_eq!(components.size(&sha).await.unwrap(), None);
        assert_eq!(components.put(&bytes).await.unwrap(), sha);
        assert_eq!(
            components.put(&bytes).await.unwrap(),
            sha,
            "a second put changes nothing"
        );
        assert!(components.contains(&sha).await.unwrap());
        assert_eq!(
            components.size(&sha).await.unwrap(),
            Some(bytes.len() as u64)
        );
        assert_eq!(components.read(&sha).await.unwrap(), bytes);
        let mut streamed = Vec::new();
        let copied = components.copy_to(&sha, &mut streamed).await.unwrap();
        assert_eq!((copied, streamed == bytes), (bytes.len() as u64, true));
        // Names that are not a sha256 are simply absent.
        assert!(!components.contains("../etc/passwd").await.unwrap());
        assert_eq!(components.size("NOT-HEX").await.unwrap(), None);
    }
}

#[tokio::test]
async fn two_origins_storing_one_component_at_once_store_it_once() {
    let server = TestPostgres::start("components-race");
    let bytes = vec![42u8; 3 << 20];
    let puts = (0..4).map(|_| {
        let (url, bytes) = (server.url(), bytes.clone());
        tokio::spawn(async move {
            let db = Arc::new(Database::connect(&url).await.unwrap());
            Components::in_database(db).put(&bytes).await.unwrap()
        })
    });
    for put in futures::future::join_all(puts).await {
        assert_eq!(put.unwrap(), sha256_hex(&bytes));
    }
    let db = Arc::new(Database::connect(&server.url()).await.unwrap());
    let components = Components::in_database(db);
    assert_eq!(components.read(&sha256_hex(&bytes)).await.unwrap(), bytes);
}
