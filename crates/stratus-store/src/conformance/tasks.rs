//! Task checks: create and deduplication, tombstones, get, list order and paging, delete.

use stratus_types::proto::tasks::Task;
use stratus_types::proto::wkt::Timestamp;

use super::{
    HOUR, SECOND, T0, W, W0, create, create_ok, create_one, ids, make_queue, qp, task, task_at,
};
use crate::{Store, StoreError, TaskCursor, Windows};

pub(super) async fn task_create_duplicates(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let out = create(
        s,
        &q,
        vec![task(&q, "a"), task(&q, "b"), task(&q, "a")],
        T0,
        W,
    )
    .await;
    assert_eq!(
        out,
        vec![
            Ok(task(&q, "a")),
            Ok(task(&q, "b")),
            Err(StoreError::TaskExists)
        ],
        "a duplicate inside one call fails like any other"
    );
    assert_eq!(
        create_one(s, &q, task(&q, "a"), T0, W).await,
        Err(StoreError::TaskExists),
        "live duplicate"
    );
    assert_eq!(
        create(s, &q, Vec::new(), T0, W).await,
        Vec::new(),
        "an empty call"
    );

    // A deleted task blocks its name until finished_at + tombstone_ttl.
    let deleted_at = T0 + SECOND;
    assert_eq!(
        s.delete_tasks(&q, vec!["a".into()], deleted_at).await,
        Ok(vec![Ok(())])
    );
    for now in [
        deleted_at,
        deleted_at + SECOND,
        deleted_at + W.tombstone_ttl - 1,
    ] {
        assert_eq!(
            create_one(s, &q, task(&q, "a"), now, W).await,
            Err(StoreError::TaskRecentlyExisted),
            "tombstone at now = deleted + {} µs",
            now - deleted_at
        );
    }
    let after = deleted_at + W.tombstone_ttl;
    let fresh = task_at(&q, "a", after + HOUR, after);
    assert_eq!(
        create_one(s, &q, fresh.clone(), after, W).await,
        Ok(fresh.clone()),
        "name free after the window"
    );
    assert_eq!(
        s.get_task(&q.task("a"), after, W).await,
        Ok(fresh),
        "the new task replaced the tombstone"
    );
    assert_eq!(
        create_one(s, &q, task(&q, "a"), after, W).await,
        Err(StoreError::TaskExists)
    );

    // Window 0: the name is free the moment the task is deleted.
    assert_eq!(
        s.delete_tasks(&q, vec!["b".into()], T0).await,
        Ok(vec![Ok(())])
    );
    assert_eq!(
        create_one(s, &q, task(&q, "b"), T0, W0).await,
        Ok(task(&q, "b"))
    );

    // Names are per queue.
    let other = qp("other");
    make_queue(s, &other).await;
    create_ok(s, &other, task(&other, "a"), T0).await;
}

pub(super) async fn task_create_in_missing_queue(s: &dyn Store) {
    let q = qp("missing");
    let out = s
        .create_tasks(&q, vec![task(&q, "a"), task(&q, "b")], T0, W)
        .await;
    assert_eq!(
        out,
        Ok(vec![
            Err(StoreError::QueueNotFound),
            Err(StoreError::QueueNotFound)
        ]),
        "every item fails"
    );
    make_queue(s, &qp("deleted")).await;
    s.delete_queue(&qp("deleted"), T0)
        .await
        .expect("delete_queue");
    let d = qp("deleted");
    let out = s.create_tasks(&d, vec![task(&d, "a")], T0, W).await;
    assert_eq!(
        out,
        Ok(vec![Err(StoreError::QueueNotFound)]),
        "a deleted queue takes no tasks"
    );
}

pub(super) async fn task_get_and_tombstones(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let a = create_ok(s, &q, task(&q, "a"), T0).await;
    assert_eq!(
        s.get_task(&q.task("a"), T0, W).await,
        Ok(a),
        "get returns the full task"
    );
    assert_eq!(
        s.get_task(&q.task("missing"), T0, W).await,
        Err(StoreError::TaskNotFound)
    );
    assert_eq!(
        s.get_task(&qp("nope").task("a"), T0, W).await,
        Err(StoreError::TaskNotFound),
        "missing queue"
    );
    make_queue(s, &qp("other")).await;
    assert_eq!(
        s.get_task(&qp("other").task("a"), T0, W).await,
        Err(StoreError::TaskNotFound),
        "other queue"
    );

    s.delete_tasks(&q, vec!["a".into()], T0)
        .await
        .expect("delete_tasks");
    for now in [T0, T0 + W.tombstone_ttl - 1] {
        assert_eq!(
            s.get_task(&q.task("a"), now, W).await,
            Err(StoreError::TaskRecentlyExisted),
            "inside the window"
        );
    }
    assert_eq!(
        s.get_task(&q.task("a"), T0 + W.tombstone_ttl, W).await,
        Err(StoreError::TaskNotFound),
        "window over"
    );
    assert_eq!(
        s.get_task(&q.task("a"), T0, W0).await,
        Err(StoreError::TaskNotFound),
        "window 0"
    );
    let short = Windows {
        tombstone_ttl: SECOND,
        ..W
    };
    assert_eq!(
        s.get_task(&q.task("a"), T0 + SECOND - 1, short).await,
        Err(StoreError::TaskRecentlyExisted)
    );
}

pub(super) async fn task_round_trip(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let mut t = task(&q, "exact");
    t.schedule_time = Some(Timestamp {
        seconds: T0 / SECOND + 5,
        nanos: 123_456_000,
    });
    t.dispatch_count = 2;
    t.response_count = 1;
    let created = create_ok(s, &q, t.clone(), T0).await;
    assert_eq!(created, t, "create returns the task as given");
    assert_eq!(
        s.get_task(&q.task("exact"), T0, W).await,
        Ok(t.clone()),
        "get returns it unchanged"
    );
    let page = s.list_tasks(&q, None, 10).await.expect("list_tasks");
    assert_eq!(page.tasks, vec![t], "list returns full tasks");
}

fn cursor(schedule_time: i64, id: &str) -> TaskCursor {
    TaskCursor {
        schedule_time,
        task_id: id.into(),
    }
}

pub(super) async fn task_list_order_and_paging(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let plan = [("e", 3), ("c", 2), ("a", 1), ("d", 2), ("b", 2), ("g", 0)];
    let tasks: Vec<Task> = plan
        .iter()
        .map(|(id, at)| task_at(&q, id, T0 + at * SECOND, T0))
        .collect();
    for r in create(s, &q, tasks, T0, W).await {
        r.expect("create_tasks");
    }
    let other = qp("other");
    make_queue(s, &other).await;
    create_ok(s, &other, task_at(&other, "b0", T0, T0), T0).await;
    s.delete_tasks(&q, vec!["g".into()], T0)
        .await
        .expect("delete_tasks");

    let qr = &q;
    let list = |after: Option<TaskCursor>, limit: usize| async move {
        let page = s
            .list_tasks(qr, after.as_ref(), limit)
            .await
            .expect("list_tasks");
        (ids(&page.tasks), page.next)
    };
    let all = ["a", "b", "c", "d", "e"];
    assert_eq!(
        list(None, 100).await,
        (all.iter().map(|s| s.to_string()).collect(), None),
        "by (schedule_time, id)"
    );
    assert_eq!(
        list(None, 5).await.1,
        None,
        "no next page when nothing follows"
    );
    assert_eq!(
        list(None, 2).await,
        (
            vec!["a".into(), "b".into()],
            Some(cursor(T0 + 2 * SECOND, "b"))
        )
    );
    assert_eq!(
        list(Some(cursor(T0 + 2 * SECOND, "b")), 2).await,
        (
            vec!["c".into(), "d".into()],
            Some(cursor(T0 + 2 * SECOND, "d"))
        )
    );
    assert_eq!(
        list(Some(cursor(T0 + 2 * SECOND, "d")), 2).await,
        (vec!["e".into()], None)
    );
    assert_eq!(
        list(Some(cursor(T0 + 2 * SECOND, "bb")), 10).await.0,
        vec!["c", "d", "e"],
        "cursor between tasks"
    );
    assert_eq!(
        list(Some(cursor(T0 + 3 * SECOND, "e")), 10).await,
        (Vec::new(), None),
        "past the end"
    );
    let page = s.list_tasks(&q, None, 1).await.expect("list_tasks");
    assert_eq!(
        page.tasks,
        vec![task_at(&q, "a", T0 + SECOND, T0)],
        "listed tasks carry their request"
    );
    assert_eq!(
        s.list_tasks(&qp("missing"), None, 10)
            .await
            .map(|p| p.tasks.len()),
        Err(StoreError::QueueNotFound)
    );
}

pub(super) async fn task_delete_outcomes(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    create_ok(s, &q, task(&q, "a"), T0).await;
    create_ok(s, &q, task(&q, "b"), T0).await;
    let ids_in = ["a", "missing", "a", "b"].map(String::from).to_vec();
    let out = s.delete_tasks(&q, ids_in, T0).await;
    assert_eq!(
        out,
        Ok(vec![
            Ok(()),
            Err(StoreError::TaskNotFound),
            Err(StoreError::TaskNotFound),
            Ok(())
        ]),
        "one outcome per name; an already deleted task is not found"
    );
    assert!(
        s.list_tasks(&q, None, 10)
            .await
            .expect("list_tasks")
            .tasks
            .is_empty()
    );
    assert_eq!(s.delete_tasks(&q, Vec::new(), T0).await, Ok(Vec::new()));
    assert_eq!(
        s.delete_tasks(&qp("missing"), vec!["a".into()], T0).await,
        Err(StoreError::QueueNotFound)
    );
}
