//! Heartbeats: test events that made it through the queue and the handler,
//! the proof that the notification path works.
//!
//! Items (pk / sk):
//! - `HEARTBEAT` / `<received_at>#<event doc id>`: one test event, with the
//!   document's `CustomerId` and `SourceAccount` when it had them; expires
//!   after 30 days (the table's TTL).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::{Duration, OffsetDateTime};

use super::{
    corrupt, get_s, s, sdk_error, stamp, Item, Ledger, LedgerError, CUSTOMER_ID, EVENT_DOC_ID,
    EXPIRES_AT, PK, SK, SOURCE_ACCOUNT,
};

const HEARTBEAT_PK: &str = "HEARTBEAT";
const RECEIVED_AT: &str = "received_at";
const EVENT_AT: &str = "event_at";
const PLACEHOLDER_HIT_TYPE_ID: &str = "placeholder_hit_type_id";
const HEARTBEAT_TTL: Duration = Duration::days(30);

/// A test event that made it through the queue and the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub event_doc_id: String,
    pub event_at: String,
    pub received_at: String,
    pub placeholder_hit_type_id: Option<String>,
    /// The document's `CustomerId` and `SourceAccount`, when it had them:
    /// what tells the lab's own test event from another requester's.
    pub customer_id: Option<String>,
    pub source_account: Option<String>,
}

/// Who sent a document: its `CustomerId` and `SourceAccount`, as given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sender<'a> {
    pub customer_id: Option<&'a str>,
    pub source_account: Option<&'a str>,
}

impl Ledger {
    /// Records that a test event came through, for `subscribe` to find.
    pub async fn record_heartbeat(
        &self,
        event_doc_id: &str,
        event_at: OffsetDateTime,
        placeholder_hit_type_id: Option<&str>,
        sender: Sender<'_>,
        now: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem(heartbeat)";
        let received_at = stamp(now);
        let mut item: Item = HashMap::from([
            (PK.to_owned(), s(HEARTBEAT_PK)),
            (SK.to_owned(), s(format!("{received_at}#{event_doc_id}"))),
            (EVENT_DOC_ID.to_owned(), s(event_doc_id)),
            (EVENT_AT.to_owned(), s(stamp(event_at))),
            (RECEIVED_AT.to_owned(), s(received_at)),
            (
                EXPIRES_AT.to_owned(),
                AttributeValue::N((now + HEARTBEAT_TTL).unix_timestamp().to_string()),
            ),
        ]);
        if let Some(t) = placeholder_hit_type_id {
            item.insert(PLACEHOLDER_HIT_TYPE_ID.to_owned(), s(t));
        }
        if let Some(c) = sender.customer_id {
            item.insert(CUSTOMER_ID.to_owned(), s(c));
        }
        if let Some(a) = sender.source_account {
            item.insert(SOURCE_ACCOUNT.to_owned(), s(a));
        }
        self.put(OP, item).await
    }

    /// Heartbeats received after `since`, oldest first.
    pub async fn heartbeats_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<Heartbeat>, LedgerError> {
        const OP: &str = "Query(heartbeats)";
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk AND {SK} > :since"))
            .expression_attribute_values(":pk", s(HEARTBEAT_PK))
            .expression_attribute_values(":since", s(stamp(since)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        items
            .iter()
            .map(|i| {
                let need = |n: &str| {
                    get_s(i, n).ok_or_else(|| corrupt(OP, format!("heartbeat without {n}")))
                };
                Ok(Heartbeat {
                    event_doc_id: need(EVENT_DOC_ID)?,
                    event_at: need(EVENT_AT)?,
                    received_at: need(RECEIVED_AT)?,
                    placeholder_hit_type_id: get_s(i, PLACEHOLDER_HIT_TYPE_ID),
                    customer_id: get_s(i, CUSTOMER_ID),
                    source_account: get_s(i, SOURCE_ACCOUNT),
                })
            })
            .collect()
    }

    /// The most recent heartbeat, if any.
    pub async fn last_heartbeat(&self) -> Result<Option<String>, LedgerError> {
        const OP: &str = "Query(last heartbeat)";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PK} = :pk"))
            .expression_attribute_values(":pk", s(HEARTBEAT_PK))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .first()
            .and_then(|i| get_s(i, RECEIVED_AT)))
    }
}
