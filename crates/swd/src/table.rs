//! Human output: the status table and compact partition lists.

use std::fmt::Write;

use streamweave_distributed::{ClusterStatus, PartitionId};

/// Writes partitions as ranges: `[0, 1, 2, 5]` becomes `0-2,5`; none is `-`.
///
/// ```
/// assert_eq!(swd::table::ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
/// assert_eq!(swd::table::ranges(&[]), "-");
/// ```
pub fn ranges(partitions: &[PartitionId]) -> String {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// The status as an aligned table with a summary line above it.
pub fn status_table(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {}  generation {}  partitions {}  strategy {}  workers {}",
        status.cluster,
        status.generation,
        status.partitions,
        status.strategy,
        status.workers.len()
    );
    let _ = writeln!(out, "unassigned: {}", ranges(&status.unassigned));
    if let Some(reason) = status.unassigned_reason() {
        let _ = writeln!(out, "  ({reason})");
    }
    if let Some(job) = &status.job {
        let _ = writeln!(
            out,
            "job {}: {}  attempt {}  restarts {}  records in {}  out {}  partitions done {}/{}{}{}",
            job.name,
            serde_json::to_value(job.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            job.attempt,
            job.restarts,
            job.records_in,
            job.records_out,
            job.partitions_done,
            status.partitions,
            job.lag.map(|lag| format!("  lag {lag}")).unwrap_or_default(),
            job.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    if !status.moving.is_empty() {
        let moving: Vec<String> = status
            .moving
            .iter()
            .map(|m| match &m.to {
                Some(to) => format!("{} {}->{}", m.partition, m.from, to),
                None => format!("{} {}->?", m.partition, m.from),
            })
            .collect();
        let _ = writeln!(out, "moving: {}", moving.join(", "));
    }
    let header = [
        "WORKER",
        "ADDRESS",
        "STATE",
        "HEALTHY",
        "LOAD",
        "CAPACITY",
        "PARTITIONS",
    ];
    let rows: Vec<[String; 7]> = status
        .workers
        .iter()
        .map(|w| {
            [
                w.id.to_string(),
                w.address.clone(),
                w.state.to_string(),
                if w.healthy { "yes" } else { "no" }.to_string(),
                w.load.to_string(),
                w.capacity.to_string(),
                ranges(&w.partitions),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
