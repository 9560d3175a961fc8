use super::*;
use crate::protocol::SubmittedJobState as S;

fn job(id: &str, state: S, port: Option<u16>) -> JobEntry {
    JobEntry {
        id: id.into(),
        name: "wordcount".into(),
        state,
        master_port: port,
        restarts: 0,
        records_in: 0,
        records_out: 0,
        error: None,
        savepoint: None,
        output: None,
    }
}

fn join(id: &str, port: u16) -> SessionAction {
    SessionAction::Join { id: id.into(), port }
}

fn leave(id: &str) -> SessionAction {
    SessionAction::Leave { id: id.into() }
}

#[test]
fn joins_each_running_job_once_and_leaves_it_when_it_ends() {
    let mut core = JobSessionsCore::default();
    let list = vec![
        job("j-1", S::Running, Some(10)),
        job("j-2", S::Waiting, Some(20)),
        job("j-0", S::Finished, None),
        job("j-3", S::Starting, None),
    ];
    assert_eq!(core.reconcile(&list), vec![join("j-1", 10), join("j-2", 20)]);
    assert_eq!(core.reconcile(&list), vec![], "already joined");
    let list = vec![
        job("j-1", S::Stopping, Some(10)),
        job("j-2", S::Cancelled, None),
        job("j-3", S::Running, Some(30)),
    ];
    assert_eq!(core.reconcile(&list), vec![leave("j-2"), join("j-3", 30)]);
    // A job that vanished from the list (the cluster coordinator restarted) is left too.
    assert_eq!(core.reconcile(&[]), vec![leave("j-1"), leave("j-3")]);
}

#[test]
fn a_master_on_a_new_port_is_left_and_joined_again() {
    let mut core = JobSessionsCore::default();
    assert_eq!(
        core.reconcile(&[job("j-1", S::Running, Some(10))]),
        vec![join("j-1", 10)]
    );
    assert_eq!(
        core.reconcile(&[job("j-1", S::Running, Some(11))]),
        vec![leave("j-1"), join("j-1", 11)]
    );
}

#[test]
fn a_session_that_ended_by_itself_is_joined_again_and_stopping_leaves_all() {
    let mut core = JobSessionsCore::default();
    let list = vec![job("j-1", S::Running, Some(10)), job("j-2", S::Running, Some(20))];
    core.reconcile(&list);
    core.ended("j-1");
    assert_eq!(core.reconcile(&list), vec![join("j-1", 10)]);
    assert_eq!(core.leave_all(), vec![leave("j-1"), leave("j-2")]);
    assert_eq!(core.leave_all(), vec![]);
}
