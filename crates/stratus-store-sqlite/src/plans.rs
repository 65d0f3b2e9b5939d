//! Checks that the hot statements use the indexes the schema documents, on the bundled SQLite.
//! A query that silently turns into a table scan is the most likely way this store gets slow.

use rusqlite::Connection;

use crate::{dispatch, queues, schema, tasks};

fn plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let args: Vec<i64> = vec![1; stmt.parameter_count()];
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            r.get::<_, String>(3)
        })
        .unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
}

#[test]
fn hot_statements_use_their_indexes() {
    let mut conn = Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    let expect = [
        (
            tasks::LIST,
            "USING INDEX tasks_due (queue_id=? AND (schedule_time,task_id)>(?,?))",
        ),
        (queues::PURGE_TASKS, "USING INDEX tasks_due (queue_id=?)"),
        (
            tasks::GET,
            "USING INDEX tasks_name (queue_id=? AND task_id=?)",
        ),
        (
            tasks::DELETE,
            "USING INDEX tasks_name (queue_id=? AND task_id=?)",
        ),
        (
            tasks::CLEANUP,
            "INDEX tasks_finished (state=? AND finished_at>? AND finished_at<?)",
        ),
        (dispatch::DUE, "USING INDEX tasks_due (queue_id=?"),
        (dispatch::LOAD_LIVE, "USING INTEGER PRIMARY KEY (rowid=?)"),
        (
            dispatch::FAILED,
            "USING INDEX tasks_failed (queue_id=? AND id>?)",
        ),
        (
            queues::LIST,
            "USING INDEX queues_location (project=? AND location=? AND name>?)",
        ),
    ];
    for (sql, want) in expect {
        let got = plan(&conn, sql);
        assert!(
            got.contains(want),
            "plan of\n{sql}\nis {got}, expected {want}"
        );
        assert!(
            !got.contains("SCAN tasks"),
            "plan of\n{sql}\nscans tasks: {got}"
        );
    }
}
