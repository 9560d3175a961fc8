//! Job code is user code: a panic in a source, operator, key function or sink must fail its
//! task and the attempt with the panic's message, never kill a thread silently (the attempt would
//! wait for that partition forever). Every call into job code goes through [`guarded`] or
//! [`guarded_async`] (or [`super::blocking::run`], which uses [`guarded`] on its thread); the
//! task then reports the [`DataflowError::Panicked`] like any other failure (`JobFailed`).
//!
//! The panic's location is only given to the panic hook, so the first guard installs a hook
//! that notes it for the panicking thread and then calls the hook that was there before (by
//! default the one that prints the panic on stderr, which keeps doing so). The guard takes the
//! note on the same thread, right where it catches the panic.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use futures::FutureExt;

use crate::dataflow::DataflowError;

thread_local! {
    /// Where the last panic on this thread happened, noted by the hook, taken by the guard.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The error for a caught panic's payload, without its location (caught on another thread).
pub(crate) fn panicked(payload: Box<dyn Any + Send>) -> DataflowError {
    DataflowError::Panicked {
        message: message(payload),
        location: None,
    }
}

/// The error for a panic just caught on this thread: with the location the hook noted.
fn caught(payload: Box<dyn Any + Send>) -> DataflowError {
    DataflowError::Panicked {
        message: message(payload),
        location: LOCATION.with(|l| l.borrow_mut().take()),
    }
}

/// The text of a panic payload: `panic!` carries a `String` or a `&'static str`.
fn message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    }
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

/// Runs `f`, turning a panic into [`DataflowError::Panicked`].
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, DataflowError>) -> Result<T, DataflowError> {
    note_locations();
    // The task's state is dropped after a panic (the attempt fails), so nothing observes it
    // half-updated.
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(caught(payload)))
}

/// Awaits `future`, turning a panic while it is polled into [`DataflowError::Panicked`].
pub(crate) async fn guarded_async<T>(
    future: impl Future<Output = Result<T, DataflowError>>,
) -> Result<T, DataflowError> {
    note_locations();
    // A panicking poll returns here within the same poll, on the thread that panicked.
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| Err(caught(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_keeps_its_message_and_location() {
        let line = line!() + 2;
        let error =
            guarded(|| -> Result<(), DataflowError> { panic!("record {} is poison", 7) }).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("panicked at {}:{line}:", file!()))
                && text.ends_with(": record 7 is poison"),
            "{text}"
        );
        let error = guarded(|| -> Result<(), DataflowError> { panic!("static") }).unwrap_err();
        assert!(
            matches!(&error, DataflowError::Panicked { message, location: Some(_) } if message == "static"),
            "{error:?}"
        );
        let error = guarded(|| -> Result<(), DataflowError> { std::panic::panic_any(42_u32) }).unwrap_err();
        assert!(
            error.to_string().ends_with(": a panic without a message"),
            "{error}"
        );
        assert_eq!(guarded(|| Ok(3)).unwrap(), 3);
        assert_eq!(
            panicked(Box::new("elsewhere")).to_string(),
            "panicked: elsewhere",
            "no location from another thread"
        );
    }

    #[tokio::test]
    async fn a_panic_inside_a_future_is_caught() {
        let error = guarded_async(async {
            if true {
                panic!("async poison")
            }
            Ok::<(), DataflowError>(())
        })
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("panicked at {}:", file!())) && text.ends_with(": async poison"),
            "{text}"
        );
    }
}
