//! The CLI face of import: [`import_with_progress_bar`] imports files one by
//! one, drawing an indicatif bar (bytes, MB/s, blocks/s) on stderr when it is
//! a terminal, and printing one summary line per file on stdout (errors on
//! stderr). A failed file does not stop the others; the result says which
//! failed. Never exits the process.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::import::{ImportError, ImportOutcome, ImportPhase, ImportSummary, import_car};
use crate::store::Store;

/// Bar template: spinner, bytes done/total, throughput, blocks and block rate.
const BAR_TEMPLATE: &str =
    "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} ({eta})";

/// One line describing an import, as printed by [`import_with_progress_bar`].
pub fn format_summary(s: &ImportSummary) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let mb_per_s = s.file_size as f64 / 1e6 / secs;
    match s.outcome {
        ImportOutcome::AlreadyIndexed => format!(
            "{}: already indexed as shard {} ({} blocks, {} bytes)",
            s.path.display(),
            s.shard_id,
            s.blocks,
            s.block_bytes
        ),
        ImportOutcome::Indexed | ImportOutcome::Reindexed => format!(
            "{}: {} shard {}: {} blocks ({} new), {:.1} MB in {:.2} s ({:.0} MB/s, {:.0} blocks/s)",
            s.path.display(),
            if s.outcome == ImportOutcome::Indexed {
                "indexed as"
            } else {
                "re-indexed"
            },
            s.shard_id,
            s.blocks,
            s.new_entries,
            s.file_size as f64 / 1e6,
            secs,
            mb_per_s,
            s.blocks as f64 / secs,
        ),
    }
}

/// Some files of a batch could not be imported (the others were).
#[derive(Debug, thiserror::Error)]
#[error("{} of {} CAR files failed to import", failed.len(), failed.len() + imported.len())]
pub struct ImportFailures {
    /// The files that were imported (or already indexed).
    pub imported: Vec<ImportSummary>,
    /// The files that failed; nothing of theirs was written.
    pub failed: Vec<ImportError>,
}

/// Imports `paths` in order, continuing after failures. Output: a progress
/// bar on stderr (only when stderr is a terminal), a summary line per success
/// on stdout, an error line per failure on stderr. `Err` when any file
/// failed.
pub fn import_with_progress_bar(
    store: &Store,
    paths: &[PathBuf],
) -> Result<Vec<ImportSummary>, ImportFailures> {
    let (imported, failed): (Vec<_>, Vec<_>) = import_each_with_progress_bar(store, paths)
        .into_iter()
        .partition(Result::is_ok);
    let imported: Vec<ImportSummary> = imported.into_iter().filter_map(Result::ok).collect();
    let failed: Vec<ImportError> = failed.into_iter().filter_map(Result::err).collect();
    if failed.is_empty() {
        Ok(imported)
    } else {
        Err(ImportFailures { imported, failed })
    }
}

/// [`import_with_progress_bar`], returning one result per path, in order.
pub fn import_each_with_progress_bar(
    store: &Store,
    paths: &[PathBuf],
) -> Vec<Result<ImportSummary, ImportError>> {
    let tty = std::io::stderr().is_terminal();
    let style = ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut results = Vec::with_capacity(paths.len());
    for path in paths {
        let target = if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target).with_style(style.clone());
        bar.set_prefix(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let started = Instant::now();
        let r = import_car(store, path, |p| {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            let rate = p.blocks as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(match p.phase {
                ImportPhase::Scanning => format!("{} blocks, {rate:.0} blocks/s", p.blocks),
                ImportPhase::Indexing => format!("indexing {} entries", p.blocks),
                ImportPhase::Committing => "committing".to_string(),
            });
        });
        bar.finish_and_clear();
        match &r {
            Ok(s) => println!("{}", format_summary(s)),
            Err(e) => eprintln!("import failed: {e}"),
        }
        results.push(r);
    }
    results
}
