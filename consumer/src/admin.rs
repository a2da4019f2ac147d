//! `consumer dead-letters` and `consumer replay`: the operator's subcommands, printing to a
//! writer, so that `main.rs` only picks what to run.

use std::io::Write;

use crate::{
    config::{Command, Settings},
    dead_letter::{DeadLetter, DeadLetters},
};

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// Printing the result failed (a closed stdout).
    #[error(transparent)]
    Output(#[from] std::io::Error),
}

/// Runs `command` against the streams of `settings`; what it prints goes to `out`.
pub async fn run(
    settings: &Settings,
    command: &Command,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let letters = DeadLetters::connect(&settings.redis).await?;
    match command {
        Command::DeadLetters => {
            for letter in letters.list().await? {
                writeln!(out, "{}", line(&letter))?;
            }
        }
        Command::Replay { ids, all } => {
            let replayed = letters.replay((!*all).then_some(ids.as_slice())).await?;
            writeln!(out, "replayed {} entries", replayed.len())?;
        }
    }
    Ok(())
}

/// One dead letter as `dead-letters` prints it, for scripts: id, original id, deliveries
/// and the reason, tab-separated, the reason last and on one line.
pub fn line(l: &DeadLetter) -> String {
    let reason = l.reason.replace(['\n', '\t'], " ");
    format!("{}\t{}\t{}\t{reason}", l.id, l.original_id, l.deliveries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_with_tabs_and_newlines_stays_the_last_column_of_one_line() {
        let letter = DeadLetter {
            stream: "s".into(),
            id: "9-0".into(),
            original_id: "1-0".into(),
            reason: "clickhouse refused\tthe entry:\nCode: 6".into(),
            deliveries: 2,
            raw: Default::default(),
        };
        assert_eq!(
            line(&letter),
            "9-0\t1-0\t2\tclickhouse refused the entry: Code: 6"
        );
    }
}
