//! Built-in sinks: part files in a directory ([`TextDirSink`]), a NATS subject captured by a
//! JetStream stream ([`JetStreamSink`]), standard output ([`StdoutSink`]) and an in-memory
//! collector for tests ([`CollectorSink`]).

mod collector;
mod jetstream;
mod stdout;
mod text_dir;

pub use collector::CollectorSink;
pub use jetstream::JetStreamSink;
pub use stdout::StdoutSink;
pub use text_dir::{is_final_output, TextDirSink};
