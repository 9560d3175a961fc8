//! The boundary between the runtime and the job's own code: a panic in a source, operator,
//! key function or sink becomes a [`DataflowError::Panicked`] that the task reports like any
//! other failure (`WorkerMessage::JobFailed`), so the attempt fails and the coordinator restarts
//! or fails the job. Without it the panic would end a blocking task that nobody joins, and the
//! attempt would wait for that partition forever. (The default panic hook still prints the
//! panic and its location on stderr.)

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::dataflow::DataflowError;

/// Runs `f`, turning a panic inside it into [`DataflowError::Panicked`].
///
/// `AssertUnwindSafe`: after a panic the task's state is abandoned (the attempt is aborted and
/// restarted from a checkpoint or the beginning), so nothing observes it half-updated; shared
/// locks are taken with `unwrap_or_else(into_inner)` throughout.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, DataflowError>) -> Result<T, DataflowError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(DataflowError::Panicked {
            message: panic_message(payload.as_ref()),
        })
    })
}

/// The text of a panic payload: `panic!("...")` carries a `&str` or a `String`.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let literal = guarded::<()>(|| panic!("poison record"));
        assert!(
            matches!(&literal, Err(DataflowError::Panicked { message }) if message == "poison record"),
            "{literal:?}"
        );
        let n = 7;
        let formatted = guarded::<()>(|| panic!("bad record {n}"));
        assert_eq!(
            formatted.map_err(|e| e.to_string()),
            Err("panicked: bad record 7".to_string())
        );
        let other = guarded::<()>(|| std::panic::panic_any(42_u32));
        assert!(
            matches!(&other, Err(DataflowError::Panicked { message }) if message.contains("non-string")),
            "{other:?}"
        );
    }

    #[test]
    fn results_pass_through() {
        assert_eq!(guarded(|| Ok::<_, DataflowError>(5)).ok(), Some(5));
        assert!(matches!(
            guarded::<()>(|| Err(DataflowError::Cancelled)),
            Err(DataflowError::Cancelled)
        ));
    }
}
