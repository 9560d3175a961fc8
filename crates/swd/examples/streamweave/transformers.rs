//! Two StreamWeave transformers as a StreamWeave user writes them: against the `streamweave`
//! 0.6 core traits only, knowing nothing of streamweave-distributed.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use streamweave::{Input, Output, Transformer, TransformerConfig};

/// Splits lines into lowercase words of letters and digits (`"Hello, World!"` -> `hello`,
/// `world`).
#[derive(Default)]
pub struct Tokenizer {
    config: TransformerConfig<String>,
}

/// The words of a line, as [`Tokenizer`] emits them.
pub fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

impl Input for Tokenizer {
    type Input = String;
    type InputStream = Pin<Box<dyn Stream<Item = String> + Send>>;
}

impl Output for Tokenizer {
    type Output = String;
    type OutputStream = Pin<Box<dyn Stream<Item = String> + Send>>;
}

#[async_trait::async_trait]
impl Transformer for Tokenizer {
    type InputPorts = (String,);
    type OutputPorts = (String,);

    async fn transform(&mut self, input: Self::InputStream) -> Self::OutputStream {
        Box::pin(input.flat_map(|line| futures::stream::iter(words(&line))))
    }

    fn set_config_impl(&mut self, config: TransformerConfig<String>) {
        self.config = config;
    }

    fn get_config_impl(&self) -> &TransformerConfig<String> {
        &self.config
    }

    fn get_config_mut_impl(&mut self) -> &mut TransformerConfig<String> {
        &mut self.config
    }
}

/// Formats `(word, count)` as `word<TAB>count`.
#[derive(Default)]
pub struct Formatter {
    config: TransformerConfig<(String, u64)>,
}

impl Input for Formatter {
    type Input = (String, u64);
    type InputStream = Pin<Box<dyn Stream<Item = (String, u64)> + Send>>;
}

impl Output for Formatter {
    type Output = String;
    type OutputStream = Pin<Box<dyn Stream<Item = String> + Send>>;
}

#[async_trait::async_trait]
impl Transformer for Formatter {
    type InputPorts = ((String, u64),);
    type OutputPorts = (String,);

    async fn transform(&mut self, input: Self::InputStream) -> Self::OutputStream {
        Box::pin(input.map(|(word, count)| format!("{word}\t{count}")))
    }

    fn set_config_impl(&mut self, config: TransformerConfig<(String, u64)>) {
        self.config = config;
    }

    fn get_config_impl(&self) -> &TransformerConfig<(String, u64)> {
        &self.config
    }

    fn get_config_mut_impl(&mut self) -> &mut TransformerConfig<(String, u64)> {
        &mut self.config
    }
}

/// Sorts its whole input: a transformer that keeps state (all of it) until its input ends.
#[derive(Default)]
pub struct SortLines {
    config: TransformerConfig<String>,
}

impl Input for SortLines {
    type Input = String;
    type InputStream = Pin<Box<dyn Stream<Item = String> + Send>>;
}

impl Output for SortLines {
    type Output = String;
    type OutputStream = Pin<Box<dyn Stream<Item = String> + Send>>;
}

#[async_trait::async_trait]
impl Transformer for SortLines {
    type InputPorts = (String,);
    type OutputPorts = (String,);

    async fn transform(&mut self, input: Self::InputStream) -> Self::OutputStream {
        let sorted = async move {
            let mut lines: Vec<String> = input.collect().await;
            lines.sort();
            futures::stream::iter(lines)
        };
        Box::pin(futures::stream::once(sorted).flatten())
    }

    fn set_config_impl(&mut self, config: TransformerConfig<String>) {
        self.config = config;
    }

    fn get_config_impl(&self) -> &TransformerConfig<String> {
        &self.config
    }

    fn get_config_mut_impl(&mut self) -> &mut TransformerConfig<String> {
        &mut self.config
    }
}
