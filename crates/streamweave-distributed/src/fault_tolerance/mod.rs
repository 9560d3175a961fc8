//! Fault tolerance: deciding when a worker has failed ([`FailureDetector`]) and recovering a
//! job's state from checkpoints ([`RecoveryManager`]; the protocol itself runs in the
//! coordinator and the workers).
//!
//! The dependency is one way: this module uses the coordinator (its configuration and handle);
//! the coordinator does not use this module. The failure detector's decision lives with the
//! engine that makes it (`coordinator/failure_detector.rs`) and is re-exported here.

mod recovery_manager;

pub use crate::coordinator::failure_detector::FailureDetector;
pub use recovery_manager::RecoveryManager;
