//! Blobs, cleanup and concurrency checks.

use futures::future::join_all;

use super::{HOUR, MINUTE, T0, W, create_one, make_queue, qp, queue, task};
use crate::{Store, StoreError, Windows};

pub(super) async fn blobs(s: &dyn Store) {
    assert_eq!(s.get_blob("ops", "k").await, Ok(None), "missing blob");
    s.put_blob("ops", "k", b"one".to_vec(), T0)
        .await
        .expect("put_blob");
    assert_eq!(s.get_blob("ops", "k").await, Ok(Some(b"one".to_vec())));
    s.put_blob("ops", "k", b"two".to_vec(), T0)
        .await
        .expect("put_blob replaces");
    assert_eq!(s.get_blob("ops", "k").await, Ok(Some(b"two".to_vec())));
    assert_eq!(
        s.get_blob("cmek", "k").await,
        Ok(None),
        "namespaces are separate"
    );
    s.put_blob("cmek", "k", Vec::new(), T0)
        .await
        .expect("empty blob");
    assert_eq!(s.get_blob("cmek", "k").await, Ok(Some(Vec::new())));
}

pub(super) async fn ping(s: &dyn Store) {
    assert_eq!(s.ping().await, Ok(()), "ping on an empty store");
    make_queue(s, &qp("ping")).await;
    assert_eq!(s.ping().await, Ok(()), "ping with data");
    assert_eq!(
        s.get_blob(crate::PING_NAMESPACE, "ping").await,
        Ok(None),
        "ping writes nothing"
    );
}

pub(super) async fn cleanup(s: &dyn Store) {
    // Windows of one hour for everything; cleanup runs at `now`, so anything that finished (or
    // was deleted, or written) at or before `horizon` goes.
    let w = Windows {
        tombstone_ttl: HOUR,
        queue_reuse_block: HOUR,
        retain_succeeded: HOUR,
        retain_failed: HOUR,
    };
    let now = T0 + HOUR + 10 * MINUTE;
    let horizon = now - HOUR;

    let q = qp("q");
    make_queue(s, &q).await;
    for id in ["a", "b", "c", "live"] {
        create_one(s, &q, task(&q, id), T0, w)
            .await
            .expect("create");
    }
    for (id, at) in [("a", T0), ("b", horizon), ("c", T0 + 50 * MINUTE)] {
        s.delete_tasks(&q, vec![id.into()], at)
            .await
            .expect("delete_tasks");
    }
    for (id, at) in [("old", T0), ("young", T0 + 30 * MINUTE)] {
        make_queue(s, &qp(id)).await;
        s.delete_queue(&qp(id), at).await.expect("delete_queue");
    }
    s.put_blob("ops", "old", b"x".to_vec(), T0)
        .await
        .expect("put_blob");
    s.put_blob("ops", "young", b"y".to_vec(), T0 + 30 * MINUTE)
        .await
        .expect("put_blob");

    // Tasks a and b, queue tombstone "old", blob "old".
    assert_eq!(s.cleanup(now, w, HOUR).await, Ok(4), "rows removed");
    assert_eq!(
        s.cleanup(now, w, HOUR).await,
        Ok(0),
        "nothing left to remove"
    );

    assert_eq!(
        s.get_task(&q.task("c"), now, w).await,
        Err(StoreError::TaskRecentlyExisted),
        "young tombstone kept"
    );
    assert!(
        s.get_task(&q.task("live"), now, w).await.is_ok(),
        "live tasks are never cleaned"
    );
    for id in ["a", "b"] {
        create_one(s, &q, task(&q, id), now, w)
            .await
            .expect("expired name is free");
    }
    assert_eq!(s.get_blob("ops", "old").await, Ok(None));
    assert_eq!(s.get_blob("ops", "young").await, Ok(Some(b"y".to_vec())));
    assert_eq!(
        s.create_queue(queue(&qp("young")), now, w).await,
        Err(StoreError::QueueRecentlyDeleted)
    );
    s.create_queue(queue(&qp("old")), now, w)
        .await
        .expect("expired queue name is free");
}

pub(super) async fn concurrent_creates(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    // Many callers, distinct names: all succeed and all are listed.
    let calls = (0..200).map(|i| s.create_tasks(&q, vec![task(&q, &format!("t{i:03}"))], T0, W));
    for (i, r) in join_all(calls).await.into_iter().enumerate() {
        let mut r = r.unwrap_or_else(|e| panic!("create t{i:03}: {e:?}"));
        assert!(matches!(r.pop(), Some(Ok(_))), "create t{i:03}");
    }
    let page = s.list_tasks(&q, None, 1000).await.expect("list_tasks");
    assert_eq!(page.tasks.len(), 200);

    // Many callers, one name: exactly one wins.
    let calls = (0..32).map(|_| s.create_tasks(&q, vec![task(&q, "same")], T0, W));
    let outcomes: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("create_tasks").pop())
        .collect();
    let won = outcomes.iter().filter(|o| matches!(o, Some(Ok(_)))).count();
    let lost = outcomes
        .iter()
        .filter(|o| matches!(o, Some(Err(StoreError::TaskExists))))
        .count();
    assert_eq!(
        (won, lost),
        (1, 31),
        "one create wins a name, the others see TaskExists"
    );
}
