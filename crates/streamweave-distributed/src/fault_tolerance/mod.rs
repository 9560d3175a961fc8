//! Fault tolerance: deciding when a worker has failed. Recovery of state from checkpoints
//! (`RecoveryManager`) arrives with the checkpoint protocol; today a failed worker's partitions
//! are reassigned and their tasks start afresh on the new owner.

mod failure_detector;

pub use failure_detector::FailureDetector;
