//! Job code is user code: a panic in a source, operator, key function or sink must fail its
//! task and the attempt with the panic's message, never kill a thread silently (the attempt would
//! wait for that partition forever).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::dataflow::DataflowError;

/// The error for a caught panic's payload.
pub(crate) fn panicked(payload: Box<dyn Any + Send>) -> DataflowError {
    let message = match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    };
    DataflowError::Panicked(message)
}

/// Runs `f`, turning a panic into [`DataflowError::Panicked`].
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, DataflowError>) -> Result<T, DataflowError> {
    // The task's state is dropped after a panic (the attempt fails), so nothing observes it
    // half-updated.
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panicked(payload)))
}

/// Awaits `future`, turning a panic while it is polled into [`DataflowError::Panicked`].
pub(crate) async fn guarded_async<T>(
    future: impl Future<Output = Result<T, DataflowError>>,
) -> Result<T, DataflowError> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| Err(panicked(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_with_a_formatted_message_keeps_it() {
        let error =
            guarded(|| -> Result<(), DataflowError> { panic!("record {} is poison", 7) }).unwrap_err();
        assert_eq!(error.to_string(), "panicked: record 7 is poison");
        let error = guarded(|| -> Result<(), DataflowError> { panic!("static") }).unwrap_err();
        assert_eq!(error.to_string(), "panicked: static");
        assert_eq!(guarded(|| Ok(3)).unwrap(), 3);
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
        assert!(error.to_string().contains("async poison"));
    }
}
