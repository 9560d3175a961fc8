//! The boundary between the runtime and the job's own code: a panic in a source, operator,
//! key function or sink becomes a [`DataflowError::Panicked`] that the task reports like any
//! other failure (`WorkerMessage::JobFailed`), so the attempt fails and the coordinator restarts
//! or fails the job. Without it the panic would end a blocking task that nobody joins, and the
//! attempt would wait for that partition forever.
//!
//! The panic's location is only given to the panic hook, so the first guard installs a hook
//! that notes it for the panicking thread and then calls the hook that was there before (by
//! default the one that prints the panic on stderr, which keeps doing so).

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::dataflow::DataflowError;

thread_local! {
    /// Where the last panic on this thread happened, noted by the hook, taken by the guard.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic inside it into [`DataflowError::Panicked`].
///
/// `AssertUnwindSafe`: after a panic the task's state is abandoned (the attempt is aborted and
/// restarted from a checkpoint or the beginning), so nothing observes it half-updated; shared
/// locks are taken with `unwrap_or_else(into_inner)` throughout.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, DataflowError>) -> Result<T, DataflowError> {
    note_locations();
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(DataflowError::Panicked {
            message: panic_message(payload.as_ref()),
            location: LOCATION.with(|l| l.borrow_mut().take()),
        })
    })
}

/// Installs (once per process) the hook that notes where a panic happened, before the
/// previous hook runs.
fn note_locations() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| l.to_string());
            // A thread being torn down has no thread-locals left: the location is just lost.
            let _ = LOCATION.try_with(|l| *l.borrow_mut() = location);
            previous(info);
        }));
    });
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
    fn a_panic_becomes_an_error_with_its_message_and_location() {
        let line = line!() + 1;
        let literal = guarded::<()>(|| panic!("poison record"));
        match &literal {
            Err(DataflowError::Panicked { message, location }) => {
                assert_eq!(message, "poison record");
                let location = location.as_deref().unwrap_or_default();
                assert!(
                    location.starts_with(&format!("{}:{line}:", file!())),
                    "{location}"
                );
            }
            other => panic!("expected a caught panic, got {other:?}"),
        }
        let n = 7;
        let formatted = guarded::<()>(|| panic!("bad record {n}")).map_err(|e| e.to_string());
        let text = formatted.expect_err("a panic");
        assert!(
            text.starts_with("panicked at ") && text.ends_with(": bad record 7"),
            "{text}"
        );
        let other = guarded::<()>(|| std::panic::panic_any(42_u32));
        assert!(
            matches!(&other, Err(DataflowError::Panicked { message, .. }) if message.contains("non-string")),
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
        let none = DataflowError::Panicked {
            message: "boom".to_string(),
            location: None,
        };
        assert_eq!(none.to_string(), "panicked: boom");
    }
}
