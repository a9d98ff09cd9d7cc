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
            Store::Redb(path) => Registry::open(path, Some(test_key())).unwrap(),
            Store::Postgres { db, .. } => Registry::connect(db.clone(), Some(test_key()))
                .await
                .unwrap(),
        }
    }
}

fn test_key() -> Arc<SealKey> {
    Arc::new(SealKey::from_bytes(&[42; 32]))
}

fn manifest(name: &str) -> AppManifest {
    AppManifest {
        name: name.into(),
        ..AppManifest::default()
    }
}

/// A new version of `app` (component `sha` repeated), active at once.
async fn activate_new(reg: &Registry, app: &str, sha: char) {
    reg.create_version(
        app,
        &sha.to_string().repeat(64),
        manifest(app),
        None,
        Rollout::Activate,
    )
    .await
    .unwrap();
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
                Rollout::Activate,
            )
            .await
            .unwrap();
        assert_eq!(v1.version, 1);
        assert!(states.has_changed().unwrap());
        let state = states.borrow_and_update().clone();
        assert_eq!(state.revision, 1);
        assert_eq!(state.releases[0].version, 1);

        // An inactive version changes no route, but nodes run it for preview.
        let v2 = reg
            .create_version(
                "shop",
                &"b".repeat(64),
                manifest("shop"),
                None,
                Rollout::Upload,
            )
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        let state = states.borrow_and_update().clone();
        assert_eq!(state.releases[0].version, 1);
        assert_eq!(state.releases[0].percent, 100);
        assert_eq!(
            state
                .others
                .iter()
                .map(|r| (r.version, r.percent))
                .collect::<Vec<_>>(),
            [(2, 0)]
        );
        reg.activate("shop", 2).await.unwrap();
        assert_eq!(reg.current_state().releases[0].sha256, "b".repeat(64));
        assert!(
            reg.current_state().others.is_empty(),
            "nothing newer than 2"
        );
        assert_eq!(reg.current_state().revision, 3);

        let (record, versions) = reg.app("shop").await.unwrap();
        assert_eq!((record.active, versions.len()), (Some(2), 2));
        assert_eq!(versions[0].note.as_deref(), Some("first"));
        assert_eq!(reg.apps().await.unwrap().len(), 1);
    }
}

fn shares(pairs: &[(u64, u8)]) -> Vec<VersionShare> {
    pairs
        .iter()
        .map(|&(version, percent)| VersionShare { version, percent })
        .collect()
}

/// (version, percent) of each release of the desired state, the active ones first.
fn running(reg: &Registry) -> Vec<(u64, u8)> {
    reg.current_state()
        .all_releases()
        .map(|r| (r.version, r.percent))
        .collect()
}

#[tokio::test]
async fn gradual_deployments_split_traffic_and_roll_back_at_once() {
    for store in Store::all("registry-split").await {
        let reg = store.open().await;
        let upload = |sha: &'static str, rollout| {
            let sha = sha.repeat(64);
            let reg = &reg;
            async move {
                reg.create_version("app", &sha, manifest("app"), None, rollout)
                    .await
            }
        };
        // A share needs an active version to share with.
        assert!(matches!(
            upload("a", Rollout::Percent(10)).await,
            Err(RegistryError::Conflict(_))
        ));
        // Version 1 (the refused one was not made).
        upload("b", Rollout::Activate).await.unwrap();
        let v = upload("c", Rollout::Percent(10)).await.unwrap().version;
        assert_eq!(v, 2);
        assert_eq!(running(&reg), [(1, 90), (2, 10)]);
        let (record, _) = reg.app("app").await.unwrap();
        assert_eq!(
            (record.active, record.split.clone()),
            (Some(1), shares(&[(1, 90), (2, 10)]))
        );

        // Rollback ends the split on the version that served before it; the new one stays
        // reachable by preview.
        assert_eq!(reg.rollback("app", None).await.unwrap(), 1);
        assert_eq!(running(&reg), [(1, 100), (2, 0)]);

        // A split of three, by hand; the first named becomes the active one.
        upload("d", Rollout::Upload).await.unwrap(); // 3: preview only
        assert_eq!(running(&reg), [(1, 100), (2, 0), (3, 0)]);
        let (active, split) = reg
            .split("app", &shares(&[(2, 50), (1, 30), (3, 20)]))
            .await
            .unwrap();
        assert_eq!((active, split), (2, shares(&[(2, 50), (1, 30), (3, 20)])));
        assert_eq!(running(&reg), [(2, 50), (1, 30), (3, 20)]);
        // Back to one version: a split of one is an activation.
        assert_eq!(
            reg.split("app", &shares(&[(3, 100)])).await.unwrap(),
            (3, vec![])
        );
        assert_eq!(running(&reg), [(3, 100)]);
        assert_eq!(reg.rollback("app", None).await.unwrap(), 2, "history kept");

        // Splits that do not add up, repeat a version or name a missing one are refused.
        for bad in [
            &[(1, 50), (2, 40)][..],
            &[(1, 50), (1, 50)],
            &[(1, 0), (2, 100)],
        ] {
            assert!(matches!(
                reg.split("app", &shares(bad)).await,
                Err(RegistryError::Conflict(_))
            ));
        }
        assert!(matches!(
            reg.split("app", &shares(&[(1, 50), (9, 50)])).await,
            Err(RegistryError::NotFound(_))
        ));
        // Activation ends a split too.
        reg.split("app", &shares(&[(1, 50), (3, 50)]))
            .await
            .unwrap();
        reg.activate("app", 3).await.unwrap();
        assert_eq!(running(&reg), [(3, 100)]);
    }
}

#[tokio::test]
async fn previews_are_the_newest_versions_since_the_active_one() {
    for store in Store::all("registry-previews").await {
        let reg = store.open().await;
        for i in 1..=8u64 {
            let sha = format!("{i:064}");
            reg.create_version("app", &sha, manifest("app"), None, Rollout::Upload)
                .await
                .unwrap();
        }
        // No active version: the newest five are reachable by preview, nothing by routes.
        assert!(reg.current_state().releases.is_empty());
        assert_eq!(running(&reg), [(4, 0), (5, 0), (6, 0), (7, 0), (8, 0)]);
        reg.activate("app", 6).await.unwrap();
        assert_eq!(running(&reg), [(6, 100), (7, 0), (8, 0)]);
    }
}

#[tokio::test]
async fn rollback_walks_history_back_and_to_a_named_version() {
    for store in Store::all("registry-rollback").await {
        let reg = store.open().await;
        for sha in ["a", "b", "c"] {
            reg.create_version(
                "app",
                &sha.repeat(64),
                manifest("app"),
                None,
                Rollout::Activate,
            )
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
        activate_new(&reg, "keep", 'a').await;
        activate_new(&reg, "drop", 'b').await;
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
    let a = Arc::new(Registry::connect(db_a.clone(), None).await.unwrap());
    let b = Arc::new(Registry::connect(db_b.clone(), None).await.unwrap());
    b.follow(&db_b);

    // Versions created through both at once are numbered once each.
    let creates = (0..20).map(|i| {
        let registry = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            registry
                .create_version(
                    "shop",
                    &format!("{i:064}"),
                    manifest("shop"),
                    None,
                    Rollout::Upload,
                )
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

    // An activation through one origin reaches the other's nodes (each upload moved the
    // revision too: nodes run new versions for preview).
    let mut states = b.subscribe();
    a.activate("shop", 7).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        states.wait_for(|s| s.revision == 21),
    )
    .await
    .expect("the other origin published the change")
    .unwrap();
    assert_eq!(b.current_state().releases[0].version, 7);
}

#[tokio::test]
async fn a_lost_database_is_unavailable_then_used_again() {
    let mut server = TestPostgres::start("registry-lost");
    let db = Arc::new(Database::connect(&server.url()).await.unwrap());
    let reg = Registry::connect(db, None).await.unwrap();
    activate_new(&reg, "shop", 'a').await;
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

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_reach_the_desired_state_only() {
    for store in Store::all("registry-secrets").await {
        let reg = store.open().await;
        assert!(matches!(
            reg.put_secret("shop", "API_KEY", "v").await,
            Err(RegistryError::NotFound(_))
        ));
        activate_new(&reg, "shop", 'a').await;
        let before = reg.current_state().revision;
        assert!(
            !reg.put_secret("shop", "API_KEY", "hunter2-secret")
                .await
                .unwrap()
        );
        assert!(
            reg.put_secret("shop", "API_KEY", "hunter3-secret")
                .await
                .unwrap()
        );
        reg.put_secret("shop", "DB_PASSWORD", "pw-secret")
            .await
            .unwrap();
        let state = reg.current_state();
        assert_eq!(state.revision, before + 3, "each change reaches the nodes");
        let secrets = state.secrets_of("shop").unwrap();
        assert_eq!(secrets.values["API_KEY"].0, "hunter3-secret");
        assert_eq!(format!("{:?}", secrets.values["API_KEY"]), "<secret>");
        let names: Vec<String> = reg
            .secret_names("shop")
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["API_KEY", "DB_PASSWORD"]);
        // Nothing in the record the API shows, and nothing in clear where it is stored.
        let (record, versions) = reg.app("shop").await.unwrap();
        assert!(!format!("{record:?}{versions:?}").contains("hunter3"));
        match &store {
            Store::Redb(path) => {
                let raw = std::fs::read(path).unwrap();
                assert!(!raw.windows(7).any(|w| w == b"hunter3"));
            }
            Store::Postgres { db, .. } => {
                let client = db.client().await.unwrap();
                let row = client
                    .query_one(
                        "SELECT string_agg(record::text, '') FROM registry_secrets",
                        &[],
                    )
                    .await
                    .unwrap();
                let text: String = row.get(0);
                assert!(
                    !text.contains("hunter3") && text.contains("API_KEY"),
                    "{text}"
                );
            }
        }
        // Bad names, too large, deleted, and gone with the app.
        assert!(matches!(
            reg.put_secret("shop", "no-dash", "v").await,
            Err(RegistryError::Invalid(_))
        ));
        assert!(matches!(
            reg.put_secret("shop", "BIG", &"x".repeat(65 << 10)).await,
            Err(RegistryError::Invalid(_))
        ));
        reg.delete_secret("shop", "API_KEY").await.unwrap();
        assert!(matches!(
            reg.delete_secret("shop", "API_KEY").await,
            Err(RegistryError::NotFound(_))
        ));
        let left = reg.current_state();
        assert_eq!(left.secrets_of("shop").unwrap().values.len(), 1);
        // Reopened with the key it reads them back; without it, it refuses to guess.
        drop(reg);
        let reopened = store.open().await;
        assert_eq!(
            reopened.current_state().secrets_of("shop").unwrap().values["DB_PASSWORD"].0,
            "pw-secret"
        );
        reopened.delete_app("shop").await.unwrap();
        assert!(reopened.current_state().secrets.is_empty());
    }
}

#[tokio::test]
async fn an_origin_without_a_key_takes_no_secrets() {
    let path = temp_dir("registry-no-key").join("registry.redb");
    let reg = Registry::open(&path, None).unwrap();
    activate_new(&reg, "shop", 'a').await;
    assert!(matches!(
        reg.put_secret("shop", "API_KEY", "v").await,
        Err(RegistryError::Invalid(_))
    ));
    drop(reg);
    let keyed = Registry::open(&path, Some(test_key())).unwrap();
    keyed.put_secret("shop", "API_KEY", "v").await.unwrap();
    drop(keyed);
    // Stored secrets and no key (or another one): the origin says so rather than serve without.
    assert!(matches!(
        Registry::open(&path, None),
        Err(RegistryError::Storage(_))
    ));
    let other = Arc::new(SealKey::from_bytes(&[1; 32]));
    assert!(matches!(
        Registry::open(&path, Some(other)),
        Err(RegistryError::Storage(_))
    ));
}

/// A trigger's ticks go to one claimant each and move forward only, on both engines, and
/// the app's row goes with the app.
#[tokio::test]
async fn each_tick_of_a_trigger_is_won_once_and_never_out_of_order() {
    for store in Store::all("registry-ticks").await {
        let reg = store.open().await;
        activate_new(&reg, "shop", 'a').await;
        let key = "* * * * * * /cron";
        assert_eq!(
            reg.claim_tick("shop", key, 100).await.unwrap(),
            TickClaim::Won { previous: None }
        );
        assert_eq!(
            reg.claim_tick("shop", key, 100).await.unwrap(),
            TickClaim::Taken
        );
        assert_eq!(
            reg.claim_tick("shop", key, 105).await.unwrap(),
            TickClaim::Won {
                previous: Some(100)
            }
        );
        // A slow node's claim of an older tick, after a newer one fired: refused.
        assert_eq!(
            reg.claim_tick("shop", key, 103).await.unwrap(),
            TickClaim::Taken
        );
        // Another trigger of the same app keeps its own ticks.
        assert_eq!(
            reg.claim_tick("shop", "0 * * * * /hourly", 103)
                .await
                .unwrap(),
            TickClaim::Won { previous: None }
        );
        drop(reg);
        let reopened = store.open().await;
        assert_eq!(
            reopened.claim_tick("shop", key, 105).await.unwrap(),
            TickClaim::Taken
        );
        reopened.delete_app("shop").await.unwrap();
        reopened
            .create_version(
                "shop",
                &"b".repeat(64),
                manifest("shop"),
                None,
                Rollout::Activate,
            )
            .await
            .unwrap();
        assert_eq!(
            reopened.claim_tick("shop", key, 50).await.unwrap(),
            TickClaim::Won { previous: None },
            "a deleted app's ticks went with it"
        );
    }
}

/// Claims of the same ticks through two origins on one database at once: each tick is won
/// exactly once.
#[tokio::test]
async fn two_origins_claiming_the_same_ticks_fire_each_once() {
    let server = TestPostgres::start("registry-ticks-two");
    let a = Arc::new(
        Registry::connect(
            Arc::new(Database::connect(&server.url()).await.unwrap()),
            None,
        )
        .await
        .unwrap(),
    );
    let b = Arc::new(
        Registry::connect(
            Arc::new(Database::connect(&server.url()).await.unwrap()),
            None,
        )
        .await
        .unwrap(),
    );
    activate_new(&a, "shop", 'a').await;
    let claims = (0..4).flat_map(|claimant| {
        let registry = if claimant % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        (1..=25u64).map(move |tick| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let claim = registry
                    .claim_tick("shop", "* * * * * * /", tick)
                    .await
                    .unwrap();
                (tick, claim)
            })
        })
    });
    let mut won: Vec<u64> = futures::future::join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .filter(|(_, claim)| matches!(claim, TickClaim::Won { .. }))
        .map(|(tick, _)| tick)
        .collect();
    won.sort();
    let distinct = won.len();
    won.dedup();
    assert_eq!(distinct, won.len(), "a tick was won twice: {won:?}");
    assert!(won.contains(&25), "the newest tick fires: {won:?}");
}
