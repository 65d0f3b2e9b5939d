//! The shared store conformance suite against SQLite, each check on a fresh database in its own
//! temporary directory.

use stratus_store_sqlite::{SqliteOptions, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    stratus_store::conformance::run_all(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open store");
        (store, dir)
    })
    .await;
}
