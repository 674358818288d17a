//! Exports: each worker's standing, and CSV cells a spreadsheet will not
//! run. Rendering and writing the file are the CLI's.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};

use crate::ids::{QualificationTypeId, WorkerId};
use crate::ledger::{ExclusionState, Ledger, LedgerError, Participation};

/// Ledger reads in flight at once.
const CONCURRENCY: usize = 8;

/// Each exported worker's standing now (`None`: never excluded). One query
/// names the excluded ones; only the others need a read each, to tell
/// released from never excluded.
pub async fn standings(
    ledger: &Ledger,
    qualification: &QualificationTypeId,
    participations: &[Participation],
) -> Result<HashMap<WorkerId, Option<ExclusionState>>, LedgerError> {
    let excluded: HashSet<WorkerId> = ledger
        .excluded_workers(qualification)
        .await?
        .into_iter()
        .map(|x| x.worker_id)
        .collect();
    let others: HashSet<&WorkerId> = participations
        .iter()
        .map(|p| &p.worker_id)
        .filter(|w| !excluded.contains(*w))
        .collect();
    let read: Vec<Result<(WorkerId, Option<ExclusionState>), LedgerError>> = stream::iter(others)
        .map(|w| async move {
            let x = ledger.exclusion(w, qualification).await?;
            Ok((w.clone(), x.map(|x| x.state)))
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut states: HashMap<WorkerId, Option<ExclusionState>> = excluded
        .into_iter()
        .map(|w| (w, Some(ExclusionState::Excluded)))
        .collect();
    for r in read {
        let (w, state) = r?;
        states.insert(w, state);
    }
    Ok(states)
}

/// A CSV cell as a spreadsheet should show it, never run it. Text from
/// outside the lab (a release note, an event document id) that begins with
/// `=`, `+`, `-`, `@`, a tab or a carriage return would be read as a
/// formula; a leading `'` makes it text (OWASP's advice for CSV injection).
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formulas_become_text_and_plain_cells_stay_as_they_are() {
        for risky in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(spreadsheet_safe(risky), format!("'{risky}"));
        }
        for plain in ["", "A1WORKER", "2026-03-02T17:04:11.000Z", "a = b", "it's"] {
            assert_eq!(spreadsheet_safe(plain), plain);
        }
    }
}
