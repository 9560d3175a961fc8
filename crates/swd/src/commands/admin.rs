//! `swd status`, `swd assign`, `swd rebalance`: one request to the coordinator each.

use std::process::ExitCode;

use streamweave_distributed::{Client, WorkerId};

use crate::cli::{AssignArgs, RebalanceArgs, StatusArgs, Target};
use crate::table::{ranges, status_table};

/// Connects within `--timeout`; each request then has the same deadline.
async fn connect(target: &Target) -> anyhow::Result<Client> {
    Ok(Client::connect_with_timeout(target.coordinator, &target.cluster, target.timeout).await?)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let status = connect(&args.target).await?.status().await?;
    if args.json {
        let mut json = serde_json::to_value(&status)?;
        if let Some(object) = json.as_object_mut() {
            object.insert("unassigned_reason".to_string(), status.unassigned_reason().into());
        }
        println!("{json}");
    } else {
        print!("{}", status_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn assign(args: AssignArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.target).await?;
    let generation = client
        .assign(WorkerId::new(args.worker.clone()), args.partitions.clone())
        .await?;
    println!(
        "assigned partitions {} to {} (generation {generation})",
        ranges(&args.partitions),
        args.worker
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn rebalance(args: RebalanceArgs) -> anyhow::Result<ExitCode> {
    let generation = connect(&args.target).await?.rebalance().await?;
    println!("rebalance started (generation {generation})");
    Ok(ExitCode::SUCCESS)
}
