//! Built-in sinks: part files in a directory ([`TextDirSink`]) or under an object store prefix
//! ([`ObjectTextSink`]), a NATS subject captured by a JetStream stream ([`JetStreamSink`]),
//! standard output ([`StdoutSink`]) and an in-memory collector for tests ([`CollectorSink`]).

mod collector;
mod jetstream;
mod names;
mod object_text;
mod stdout;
mod text_dir;

pub use collector::CollectorSink;
pub use jetstream::JetStreamSink;
pub use names::is_final_output;
pub use object_text::ObjectTextSink;
pub use stdout::StdoutSink;
pub use text_dir::TextDirSink;
