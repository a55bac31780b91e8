//! The cold-store contract suite against every store: in memory, SQLite, and the real Cloud
//! Firestore emulator.

use std::sync::Arc;
use std::time::Duration;

use blob_testkit::firestore::{FirestoreEmulator, skip_line};
use session_service::cold::contract::{self, Store};
use session_service::cold::{ColdStore as _, FirestoreColdStore, MemoryColdStore, SqliteColdStore};

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract::run_all(|| async { Arc::new(MemoryColdStore::default()) as Store }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    contract::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("state-{n}.sqlite3"));
        async move { Arc::new(SqliteColdStore::open(path).await.unwrap()) as Store }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/state.sqlite3");
    let store = SqliteColdStore::open(&path).await.unwrap();
    store.upsert_user("survivor", "s@example.com", "S").await.unwrap();
    drop(store);
    let reopened = SqliteColdStore::open(&path).await.unwrap();
    let user = reopened.get_user("survivor").await.unwrap().expect("kept on disk");
    assert_eq!(user.email, "s@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_store_keeps_the_contract_on_the_emulator() {
    let Some(emulator) = FirestoreEmulator::start("demo-blob-contract").await else {
        assert!(
            std::env::var_os("BLOB_REQUIRE_FIRESTORE_EMULATOR").is_none(),
            "BLOB_REQUIRE_FIRESTORE_EMULATOR is set but the emulator is not installed"
        );
        println!("{}", skip_line("firestore_store_keeps_the_contract_on_the_emulator"));
        return;
    };
    // The client reads the emulator's address from the environment, as in production.
    // SAFETY: set once, before any client exists; nothing else in this test binary reads it.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("FIRESTORE_EMULATOR_HOST", emulator.host());
    }
    let store: Store = Arc::new(
        FirestoreColdStore::connect(emulator.project_id(), "(default)", Duration::from_secs(10))
            .await
            .unwrap(),
    );
    contract::run_all(|| {
        let (store, emulator) = (Arc::clone(&store), &emulator);
        async move {
            emulator.reset().await;
            store
        }
    })
    .await;
}
