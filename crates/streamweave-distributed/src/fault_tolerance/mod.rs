//! Fault tolerance: deciding when a worker has failed ([`FailureDetector`]) and recovering a
//! job's state from checkpoints ([`RecoveryManager`]; the protocol itself runs in the
//! coordinator and the workers).

mod failure_detector;
mod recovery_manager;

pub use failure_detector::FailureDetector;
pub use recovery_manager::RecoveryManager;
