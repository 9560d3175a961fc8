//! `swd status`, `swd assign`, `swd rebalance`: one request to the coordinator each.

use std::process::ExitCode;

use streamweave_distributed::{Client, ClientError, ClusterStatus, WorkerId};

use crate::cli::{AssignArgs, RebalanceArgs, StatusArgs, Target};
use crate::table::{ranges, status_table};

/// Connects within `--timeout` (to the leader, given several coordinators); each request then
/// has the same deadline.
pub(crate) async fn connect(target: &Target) -> anyhow::Result<Client> {
    let security = super::security(&target.security)?;
    Ok(
        Client::connect_leader_secured(&target.coordinator, &target.cluster, target.timeout, &security)
            .await?,
    )
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = &args.target;
    // One coordinator: its own view, a standby's included; several: the leader's.
    let mut client = match target.coordinator.as_slice() {
        [one] => {
            let security = super::security(&target.security)?;
            Client::connect_secured(*one, &target.cluster, target.timeout, &security).await?
        }
        _ => connect(target).await?,
    };
    let (status, leader) = match client.status().await {
        Ok(status) => (status, client.addr().to_string()),
        Err(ClientError::NotLeader { leader, .. }) => {
            let leader = leader.unwrap_or_default();
            if args.json {
                outln!("{}", serde_json::json!({ "role": "standby", "leader": leader }))?;
            } else {
                outln!(
                    "standby; the leader is {}",
                    if leader.is_empty() {
                        "not known yet"
                    } else {
                        &leader
                    }
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        outln!("{}", status_json(&status, &leader)?)?;
    } else {
        out!("{}", status_table(&status))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as `swd status --json` prints it (and the console's `/api/status` serves it):
/// the [`ClusterStatus`] with why partitions are unassigned, the role and the leader's address.
pub fn status_json(status: &ClusterStatus, leader: &str) -> serde_json::Result<serde_json::Value> {
    let mut json = serde_json::to_value(status)?;
    if let Some(object) = json.as_object_mut() {
        object.insert("unassigned_reason".to_string(), status.unassigned_reason().into());
        object.insert("role".to_string(), "leader".into());
        object.insert("leader".to_string(), leader.into());
    }
    Ok(json)
}

pub async fn assign(args: AssignArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.target).await?;
    let generation = client
        .assign(WorkerId::new(args.worker.clone()), args.partitions.clone())
        .await?;
    outln!(
        "assigned partitions {} to {} (generation {generation})",
        ranges(&args.partitions),
        args.worker
    )?;
    Ok(ExitCode::SUCCESS)
}

pub async fn rebalance(args: RebalanceArgs) -> anyhow::Result<ExitCode> {
    let generation = connect(&args.target).await?.rebalance().await?;
    outln!("rebalance started (generation {generation})")?;
    Ok(ExitCode::SUCCESS)
}
