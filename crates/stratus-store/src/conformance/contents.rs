//! What a queue holds: delete (everything goes), purge (older tasks become tombstones), IAM.

use stratus_types::proto::google::iam::v1::{Binding, Policy};
use stratus_types::proto::tasks::queue::State;
use stratus_types::time::micros_to_ts;

use super::{
    DAY, HOUR, SECOND, T0, W, create_ok, create_one, ids, make_queue, qp, queue, task, task_at,
};
use crate::{Store, StoreError, Windows};

pub(super) async fn queue_delete_removes_everything(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    create_ok(s, &q, task(&q, "t"), T0).await;
    s.set_iam_policy(&q, policy())
        .await
        .expect("set_iam_policy");
    s.delete_queue(&q, T0).await.expect("delete_queue");
    assert_eq!(
        s.get_task(&q.task("t"), T0, W).await,
        Err(StoreError::TaskNotFound),
        "task of a deleted queue"
    );
    assert_eq!(
        s.list_tasks(&q, None, 10).await.map(|p| p.tasks.len()),
        Err(StoreError::QueueNotFound)
    );
    let created = s
        .create_tasks(&q, vec![task(&q, "u"), task(&q, "v")], T0, W)
        .await;
    assert_eq!(
        created,
        Ok(vec![
            Err(StoreError::QueueNotFound),
            Err(StoreError::QueueNotFound)
        ]),
        "every item fails"
    );
    assert_eq!(
        s.delete_tasks(&q, vec!["t".into()], T0).await,
        Err(StoreError::QueueNotFound)
    );
    assert_eq!(s.get_iam_policy(&q).await, Err(StoreError::QueueNotFound));
    assert_eq!(
        s.set_iam_policy(&q, policy()).await,
        Err(StoreError::QueueNotFound)
    );
    assert_eq!(
        s.purge_queue(&q, T0).await.map(|_| ()),
        Err(StoreError::QueueNotFound)
    );
    assert_eq!(
        s.set_queue_state(&q, 2).await.map(|_| ()),
        Err(StoreError::QueueNotFound)
    );
    assert_eq!(
        s.delete_queue(&qp("missing"), T0).await,
        Err(StoreError::QueueNotFound)
    );
}

pub(super) async fn queue_purge(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    for (id, created) in [("a", T0 - 10 * SECOND), ("b", T0 - 1), ("c", T0)] {
        create_ok(s, &q, task_at(&q, id, T0 + HOUR, created), created).await;
    }
    let purged = s.purge_queue(&q, T0).await.expect("purge_queue");
    assert_eq!(
        purged.purge_time,
        Some(micros_to_ts(T0)),
        "purge_time = now"
    );
    assert_eq!(purged.state, State::Running as i32);
    assert_eq!(s.get_queue(&q).await, Ok(purged));
    for id in ["a", "b"] {
        assert_eq!(
            s.get_task(&q.task(id), T0, W).await,
            Err(StoreError::TaskRecentlyExisted),
            "purged {id}"
        );
    }
    assert!(
        s.get_task(&q.task("c"), T0, W).await.is_ok(),
        "a task created at the purge time survives"
    );
    // Precision: within one second, only tasks created before the purge instant go.
    let q2 = qp("q2");
    make_queue(s, &q2).await;
    let half = SECOND / 2;
    create_ok(
        s,
        &q2,
        task_at(&q2, "early", T0 + HOUR, T0 + half - 1),
        T0 + half - 1,
    )
    .await;
    s.purge_queue(&q2, T0 + half).await.expect("purge q2");
    create_ok(
        s,
        &q2,
        task_at(&q2, "late", T0 + HOUR, T0 + half + 1),
        T0 + half + 1,
    )
    .await;
    let page = s.list_tasks(&q2, None, 10).await.expect("list_tasks");
    assert_eq!(
        ids(&page.tasks),
        vec!["late"],
        "purge compares µs create instants"
    );
    assert_eq!(
        page.tasks[0].create_time,
        Some(micros_to_ts(T0)),
        "create_time is shown in whole seconds"
    );
    let later = T0 + SECOND;
    create_ok(s, &q, task_at(&q, "d", T0, later), later).await;
    let page = s.list_tasks(&q, None, 10).await.expect("list_tasks");
    assert_eq!(
        ids(&page.tasks),
        vec!["d", "c"],
        "only tasks created at or after the purge are listed"
    );
    assert_eq!(
        create_one(s, &q, task_at(&q, "a", T0, later), later, W).await,
        Err(StoreError::TaskRecentlyExisted)
    );
    assert_eq!(
        s.delete_tasks(&q, vec!["a".into()], later).await,
        Ok(vec![Err(StoreError::TaskNotFound)])
    );
    create_one(s, &q, task_at(&q, "a", T0, T0 + HOUR), T0 + HOUR, W)
        .await
        .expect("name free after the tombstone window");
    let again = s.purge_queue(&q, T0 + 2 * HOUR).await.expect("purge again");
    assert_eq!(again.purge_time, Some(micros_to_ts(T0 + 2 * HOUR)));
    assert!(
        s.list_tasks(&q, None, 10)
            .await
            .expect("list_tasks")
            .tasks
            .is_empty()
    );
    assert_eq!(
        s.purge_queue(&qp("missing"), T0).await.map(|_| ()),
        Err(StoreError::QueueNotFound)
    );
}

fn policy() -> Policy {
    Policy {
        version: 1,
        bindings: vec![Binding {
            role: "roles/cloudtasks.enqueuer".into(),
            members: vec!["user:ada@example.com".into()],
            ..Default::default()
        }],
        etag: b"BwX1".to_vec(),
        ..Default::default()
    }
}

pub(super) async fn iam_policy(s: &dyn Store) {
    let q = qp("q");
    make_queue(s, &q).await;
    assert_eq!(
        s.get_iam_policy(&q).await,
        Ok(Policy::default()),
        "a queue starts with the empty policy"
    );
    assert_eq!(s.set_iam_policy(&q, policy()).await, Ok(policy()));
    assert_eq!(s.get_iam_policy(&q).await, Ok(policy()));
    let other = Policy {
        version: 3,
        ..Default::default()
    };
    assert_eq!(
        s.set_iam_policy(&q, other.clone()).await,
        Ok(other.clone()),
        "set replaces"
    );
    assert_eq!(s.get_iam_policy(&q).await, Ok(other));
    assert_eq!(
        s.get_iam_policy(&qp("missing")).await,
        Err(StoreError::QueueNotFound)
    );
    assert_eq!(
        s.set_iam_policy(&qp("missing"), policy()).await,
        Err(StoreError::QueueNotFound)
    );
    s.delete_queue(&q, T0).await.expect("delete_queue");
    let w = Windows {
        queue_reuse_block: 0,
        ..W
    };
    s.create_queue(queue(&q), T0 + DAY, w)
        .await
        .expect("re-create");
    assert_eq!(
        s.get_iam_policy(&q).await,
        Ok(Policy::default()),
        "a re-created queue has a fresh policy"
    );
}
