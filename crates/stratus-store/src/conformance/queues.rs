//! Queue checks: lifecycle, name reuse, upsert, listing, state, delete, purge, IAM.

use std::sync::{Arc, Mutex};

use stratus_types::proto::tasks::{Queue, RateLimits, queue::State};
use stratus_types::queue::{QueueFilter, normalize_queue};
use stratus_types::time::micros_to_ts;
use stratus_types::{LocationPath, Status};

use super::{SECOND, T0, W, W0, create_ok, ids, make_queue, qp, queue, queue_ids, task};
use crate::{Store, StoreError};

pub(super) async fn queue_create_and_get(s: &dyn Store) {
    let q = queue(&qp("a"));
    let created = s
        .create_queue(q.clone(), T0, W)
        .await
        .expect("create_queue");
    assert_eq!(created, q, "create_queue returns the queue as stored");
    assert_eq!(
        s.get_queue(&qp("a")).await,
        Ok(q.clone()),
        "get_queue returns the created queue"
    );
    assert_eq!(
        s.create_queue(q.clone(), T0, W).await,
        Err(StoreError::QueueExists),
        "second create"
    );
    assert_eq!(
        s.get_queue(&qp("missing")).await,
        Err(StoreError::QueueNotFound)
    );
    let elsewhere = LocationPath {
        project: "p".into(),
        location: "other".into(),
    }
    .queue("a");
    let other = s
        .create_queue(queue(&elsewhere), T0, W)
        .await
        .expect("same queue ID in another location");
    assert_eq!(s.get_queue(&elsewhere).await, Ok(other));
    assert_eq!(
        s.get_queue(&qp("a")).await,
        Ok(q),
        "queues of other locations are separate"
    );
}

pub(super) async fn queue_name_reuse_window(s: &dyn Store) {
    let a = qp("a");
    make_queue(s, &a).await;
    let deleted_at = T0 + SECOND;
    s.delete_queue(&a, deleted_at).await.expect("delete_queue");
    assert_eq!(
        s.delete_queue(&a, deleted_at).await,
        Err(StoreError::QueueNotFound),
        "second delete"
    );
    assert_eq!(
        s.get_queue(&a).await,
        Err(StoreError::QueueNotFound),
        "get after delete"
    );
    let inside = deleted_at + W.queue_reuse_block - 1;
    assert_eq!(
        s.create_queue(queue(&a), inside, W).await,
        Err(StoreError::QueueRecentlyDeleted)
    );
    let upsert = s
        .update_queue(&a, Box::new(|_| Ok(queue(&qp("a")))), inside, W)
        .await;
    assert_eq!(
        upsert,
        Err(StoreError::QueueRecentlyDeleted),
        "update_queue upsert inside the window"
    );
    let at_end = deleted_at + W.queue_reuse_block;
    s.create_queue(queue(&a), at_end, W)
        .await
        .expect("create once the window has passed");
    assert!(s.get_queue(&a).await.is_ok());

    // Window 0: free at once, and the re-created queue starts empty (no tasks, no tombstones).
    let b = qp("b");
    make_queue(s, &b).await;
    create_ok(s, &b, task(&b, "live"), T0).await;
    create_ok(s, &b, task(&b, "gone"), T0).await;
    s.delete_tasks(&b, vec!["gone".into()], T0)
        .await
        .expect("delete_tasks");
    s.delete_queue(&b, T0).await.expect("delete_queue");
    s.create_queue(queue(&b), T0, W0)
        .await
        .expect("re-create with a zero reuse window");
    let page = s.list_tasks(&b, None, 100).await.expect("list_tasks");
    assert!(
        page.tasks.is_empty(),
        "a re-created queue has no tasks, got {:?}",
        ids(&page.tasks)
    );
    for id in ["live", "gone"] {
        assert_eq!(
            s.get_task(&b.task(id), T0, W).await,
            Err(StoreError::TaskNotFound),
            "old task {id}"
        );
        create_ok(s, &b, task(&b, id), T0).await;
    }
}

/// An update function that records what it was given and returns `make(current)`.
fn recording(
    seen: &Arc<Mutex<Vec<Option<Queue>>>>,
    make: impl FnOnce(Option<Queue>) -> Result<Queue, Status> + Send + 'static,
) -> crate::QueueUpdate {
    let seen = seen.clone();
    Box::new(move |cur| {
        seen.lock().unwrap().push(cur.clone());
        make(cur)
    })
}

fn with_rate(mut q: Queue, rate: f64) -> Queue {
    q.rate_limits = Some(RateLimits {
        max_dispatches_per_second: rate,
        ..Default::default()
    });
    normalize_queue(q)
}

pub(super) async fn queue_update_upsert(s: &dyn Store) {
    let u = qp("u");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let first = with_rate(queue(&u), 10.0);
    let want = first.clone();
    let created = s
        .update_queue(&u, recording(&seen, move |_| Ok(want)), T0, W)
        .await
        .expect("upsert");
    assert_eq!(
        seen.lock().unwrap().pop(),
        Some(None),
        "update gets None for a missing queue"
    );
    assert_eq!(created, first);
    assert_eq!(
        s.get_queue(&u).await,
        Ok(first.clone()),
        "upsert created the queue"
    );

    let updated = s
        .update_queue(
            &u,
            recording(&seen, |cur| Ok(with_rate(cur.unwrap_or_default(), 20.0))),
            T0,
            W,
        )
        .await
        .expect("update");
    assert_eq!(
        seen.lock().unwrap().pop(),
        Some(Some(first.clone())),
        "update gets the stored queue"
    );
    assert_eq!(updated, with_rate(first.clone(), 20.0));
    assert_eq!(s.get_queue(&u).await, Ok(updated.clone()));

    let status = Status::invalid("queue.rate_limits is wrong.");
    let refused = status.clone();
    let rejected = s
        .update_queue(&u, recording(&seen, move |_| Err(refused)), T0, W)
        .await;
    assert_eq!(
        rejected,
        Err(StoreError::Rejected(status)),
        "a refusal passes through unchanged"
    );
    assert_eq!(
        s.get_queue(&u).await,
        Ok(updated),
        "a rejected update changes nothing"
    );
    let missing = s
        .update_queue(
            &qp("nope"),
            Box::new(|_| Err(Status::invalid("no."))),
            T0,
            W,
        )
        .await;
    assert_eq!(missing, Err(StoreError::Rejected(Status::invalid("no."))));
    assert_eq!(
        s.get_queue(&qp("nope")).await,
        Err(StoreError::QueueNotFound),
        "rejected upsert creates nothing"
    );

    // Fields the store owns survive an update that carries them over.
    s.set_queue_state(&u, State::Paused as i32)
        .await
        .expect("pause");
    s.purge_queue(&u, T0 + SECOND).await.expect("purge");
    let after = s
        .update_queue(
            &u,
            Box::new(|cur| Ok(with_rate(cur.unwrap_or_default(), 30.0))),
            T0 + 2 * SECOND,
            W,
        )
        .await
        .expect("update");
    assert_eq!(after.state, State::Paused as i32);
    assert_eq!(after.purge_time, Some(micros_to_ts(T0 + SECOND)));
    assert_eq!(s.get_queue(&u).await, Ok(after));
}

pub(super) async fn queue_list_filter_and_paging(s: &dyn Store) {
    for id in ["e", "c", "a", "d", "b", "f"] {
        make_queue(s, &qp(id)).await;
    }
    make_queue(
        s,
        &LocationPath {
            project: "p".into(),
            location: "other".into(),
        }
        .queue("x"),
    )
    .await;
    make_queue(
        s,
        &LocationPath {
            project: "p2".into(),
            location: "l".into(),
        }
        .queue("y"),
    )
    .await;
    s.delete_queue(&qp("f"), T0).await.expect("delete f");
    for id in ["b", "d"] {
        s.set_queue_state(&qp(id), State::Paused as i32)
            .await
            .expect("pause");
    }
    let all = QueueFilter::default();
    let list = |f: QueueFilter, after: Option<String>, limit: usize| async move {
        let page = s
            .list_queues(&super::loc(), &f, after.as_deref(), limit)
            .await
            .expect("list_queues");
        (queue_ids(&page.queues), page.next)
    };
    let name = |id: &str| Some(qp(id).to_string());
    assert_eq!(
        list(all.clone(), None, 100).await,
        (
            vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            None
        )
    );
    assert_eq!(
        list(all.clone(), None, 5).await.1,
        None,
        "no next page when nothing follows"
    );
    assert_eq!(
        list(all.clone(), None, 2).await,
        (vec!["a".into(), "b".into()], name("b"))
    );
    assert_eq!(
        list(all.clone(), name("b"), 2).await,
        (vec!["c".into(), "d".into()], name("d"))
    );
    assert_eq!(
        list(all.clone(), name("d"), 2).await,
        (vec!["e".into()], None)
    );
    let paused = QueueFilter::parse("state: PAUSED").expect("filter");
    assert_eq!(
        list(paused.clone(), None, 10).await,
        (vec!["b".into(), "d".into()], None)
    );
    assert_eq!(
        list(paused.clone(), None, 1).await,
        (vec!["b".into()], name("b"))
    );
    assert_eq!(
        list(paused, name("b"), 1).await,
        (vec!["d".into()], None),
        "filtered paging"
    );
    let not_paused = QueueFilter::parse("state != PAUSED").expect("filter");
    assert_eq!(list(not_paused, None, 10).await.0, vec!["a", "c", "e"]);
    let prefix = QueueFilter::parse(&format!("name: {}", qp("c"))).expect("filter");
    assert_eq!(list(prefix, None, 10).await.0, vec!["c"]);
}

pub(super) async fn queue_state(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    let paused = s
        .set_queue_state(&q, State::Paused as i32)
        .await
        .expect("pause");
    assert_eq!(paused.state, State::Paused as i32);
    assert_eq!(s.get_queue(&q).await, Ok(paused));
    let running = s
        .set_queue_state(&q, State::Running as i32)
        .await
        .expect("resume");
    assert_eq!(running.state, State::Running as i32);
    assert_eq!(
        s.get_queue(&q).await.map(|q| q.state),
        Ok(State::Running as i32)
    );
    assert_eq!(
        s.set_queue_state(&qp("missing"), 2).await,
        Err(StoreError::QueueNotFound)
    );
}
