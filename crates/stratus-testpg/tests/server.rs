//! The harness against a real server: start, a fresh database per test, SQL through psql,
//! stop and start again on the same port with the data kept.

use stratus_testpg::PgServer;

fn sql(pg: &PgServer, url: &str, q: &str) -> String {
    let out = pg.psql(url, q).unwrap();
    assert!(
        out.status.success(),
        "{q}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pg.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn starts_serves_restarts_and_keeps_data() {
    let mut pg = PgServer::start().unwrap();
    let a = pg.fresh_database().unwrap();
    let b = pg.fresh_database().unwrap();
    assert_ne!(a, b);
    sql(&pg, &a, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    sql(&pg, &a, "INSERT INTO t VALUES (1, 'kept')");
    // Databases are separate.
    let out = pg.psql(&b, "SELECT * FROM t").unwrap();
    assert!(!out.status.success(), "table visible in another database");

    if pg.port().is_some() {
        let port = pg.port();
        pg.stop().unwrap();
        assert!(pg.psql(&a, "SELECT 1").unwrap().status.code() != Some(0));
        pg.start_again().unwrap();
        assert_eq!(pg.port(), port, "restarted on another port");
    }
    let got = sql(&pg, &a, "SELECT v FROM t WHERE id = 1");
    assert!(got.contains("kept"), "{got}");
}
