use std::path::PathBuf;

use outpost_core::test_support::postgres::TestPostgres;
use outpost_core::test_support::temp_dir;

use super::*;

/// Where a test's registry lives; every behaviour test runs on both engines.
enum Store {
    Redb(PathBuf),
    /// The server is held so it runs as long as the test.
    Postgres {
        _server: TestPostgres,
        db: Arc<Database>,
    },
}

impl Store {
    async fn all(label: &str) -> Vec<Store> {
        let server = TestPostgres::start(label);
        let db = Arc::new(Database::connect(&server.url()).await.unwrap());
        vec![
            Store::Redb(temp_dir(label).join("registry.redb")),
            Store::Postgres {
                _server: server,
                db,
            },
        ]
    }

    async fn open(&self) -> Registry {
        match self {
            Store::Redb(path) => Registry::open(path).unwrap(),
            Store::Postgres { db, .. } => Registry::connect(db.clone()).await.unwrap(),
        }
    }
}

fn manifest(name: &str) -> AppManifest {
    AppManifest {
        name: name.into(),
        ..AppManifest::default()
    }
}

#[tokio::test]
async fn versions_activation_and_desired_state() {
    for store in Store::all("registry-versions").await {
        let reg = store.open().await;
        let mut states = reg.subscribe();
        let v1 = reg
            .create_version(
                "shop",
                &"a".repeat(64),
                manifest("shop"),
                Some("first".into()),
                true,
            )
            .await
            .unwrap();
        assert_eq!(v1.version, 1);
        assert!(states.has_changed().unwrap());
        let state = states.borrow_and_update().clone();
        assert_eq!(state.revision, 1);
        assert_eq!(state.releases[0].version, 1);

        // An inactive version changes nothing nodes run.
        let v2 = reg
            .create_version("shop", &"b".repeat(64), manifest("shop"), None, false)
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        assert!(!states.has_changed().unwrap());
        reg.activate("shop", 2).await.unwrap();
        assert_eq!(reg.current_state().releases[0].sha256, "b".repeat(64));
        assert_eq!(reg.current_state().revision, 2);

        let (record, versions) = reg.app("shop").await.unwrap();
        assert_eq!((record.active, versions.len()), (Some(2), 2));
        assert_eq!(versions[0].note.as_deref(), Some("first"));
        assert_eq!(reg.apps().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn rollback_walks_history_back_and_to_a_named_version() {
    for store in Store::all("registry-rollback").await {
        let reg = store.open().await;
        for sha in ["a", "b", "c"] {
            reg.create_version("app", &sha.repeat(64), manifest("app"), None, true)
                .await
                .unwrap();
        }
        assert_eq!(reg.rollback("app", None).await.unwrap(), 2);
        assert_eq!(reg.rollback("app", None).await.unwrap(), 1);
        assert!(matches!(
            reg.rollback("app", None).await,
            Err(RegistryError::Conflict(_))
        ));
        assert_eq!(reg.rollback("app", Some(3)).await.unwrap(), 3);
        assert_eq!(reg.rollback("app", None).await.unwrap(), 1);
        assert!(matches!(
            reg.rollback("app", Some(9)).await,
            Err(RegistryError::NotFound(_))
        ));
        assert!(matches!(
            reg.activate("nope", 1).await,
            Err(RegistryError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn delete_removes_the_app_and_survives_reopen() {
    for store in Store::all("registry-delete").await {
        let reg = store.open().await;
        reg.create_version("keep", &"a".repeat(64), manifest("keep"), None, true)
            .await
            .unwrap();
        reg.create_version("drop", &"b".repeat(64), manifest("drop"), None, true)
            .await
            .unwrap();
        reg.delete_app("drop").await.unwrap();
        assert!(matches!(
            reg.app("drop").await,
            Err(RegistryError::NotFound(_))
        ));
        assert!(matches!(
            reg.delete_app("drop").await,
            Err(RegistryError::NotFound(_))
        ));
        drop(reg);
        let reopened = store.open().await;
        let state = reopened.current_state();
        assert_eq!(state.revision, 3);
        let apps: Vec<_> = state.releases.iter().map(|r| r.app.as_str()).collect();
        assert_eq!(apps, ["keep"]);
    }
}

/// Two origins on one database: each change is made once, in one order, and each origin
/// publishes the other's.
#[tokio::test]
async fn two_origins_share_one_registry() {
    let server = TestPostgres::start("registry-two");
    let db_a = Arc::new(Database::connect(&server.url()).await.unwrap());
    let db_b = Arc::new(Database::connect(&server.url()).await.unwrap());
    let a = Arc::new(Registry::connect(db_a.clone()).await.unwrap());
    let b = Arc::new(Registry::connect(db_b.clone()).await.unwrap());
    b.follow(&db_b);

    // Versions created through both at once are numbered once each.
    let creates = (0..20).map(|i| {
        let registry = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            registry
                .create_version("shop", &format!("{i:064}"), manifest("shop"), None, false)
                .await
                .unwrap()
                .version
        })
    });
    let mut numbers: Vec<u64> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());

    // An activation through one origin reaches the other's nodes.
    let mut states = b.subscribe();
    a.activate("shop", 7).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), states.wait_for(|s| s.revision == 1))
        .await
        .expect("the other origin published the change")
        .unwrap();
    assert_eq!(b.current_state().releases[0].version, 7);
}

#[tokio::test]
async fn a_lost_database_is_unavailable_then_used_again() {
    let mut server = TestPostgres::start("registry-lost");
    let db = Arc::new(Database::connect(&server.url()).await.unwrap());
    let reg = Registry::connect(db).await.unwrap();
    reg.create_version("shop", &"a".repeat(64), manifest("shop"), None, true)
        .await
        .unwrap();
    server.kill();
    match reg.apps().await {
        Err(RegistryError::Unavailable(message)) => {
            assert!(message.contains("unavailable"), "{message}")
        }
        other => panic!("with the database gone: {other:?}"),
    }
    server.launch();
    assert_eq!(reg.apps().await.unwrap().len(), 1);
    assert_eq!(reg.app("shop").await.unwrap().0.active, Some(1));
}

#[tokio::test]
async fn an_unreachable_database_is_one_line_naming_it_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://outpost:hunter2@127.0.0.1:{port}/fleet");
    let err = Database::connect(&url)
        .await
        .err()
        .expect("nothing listens there");
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!("postgresql://outpost@127.0.0.1:{port}/fleet")),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}
