//! The shared store conformance suite against a real PostgreSQL: one server for the whole
//! test, each check on a fresh schema of one database.

use std::sync::atomic::{AtomicUsize, Ordering};

use stratus_store_postgres::{PgOptions, PgStore};
use stratus_testpg::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let server = PgServer::start().expect("start PostgreSQL");
    let url = server.fresh_database().expect("create a database");
    let n = AtomicUsize::new(0);
    stratus_store::conformance::run_all(|| {
        let schema = format!("c_{}", n.fetch_add(1, Ordering::Relaxed));
        let url = url.clone();
        async move {
            let opts = PgOptions {
                schema,
                pool_size: 8,
                ..PgOptions::default()
            };
            let store = PgStore::connect(&url, opts).await.expect("connect");
            (store, ())
        }
    })
    .await;
    drop(server);
}
