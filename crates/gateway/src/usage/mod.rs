//! Usage accounting that needs no database: the records the request path produces
//! (`record`), the per-request recorder that fills them in (`request_log`), how keys are named
//! in them (`keys`), what a request costs (`cost`), the in-memory spending ledger the credit
//! check reads (`ledger`), the process counters of `GET /metrics` (`metrics`) and the time
//! formats of the uni-api statistics endpoints (`time`). Persistence lives in [`crate::store`].

pub mod cost;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod record;
pub mod request_log;
pub mod time;

pub use cost::PriceTable;
pub use keys::{generate_api_key, key_id};
pub use ledger::{CostLedger, CreditState, CreditsView, created_at_ms, credit_state, window_start};
pub use metrics::{Api, Metrics};
pub use record::{AttemptRecord, InlineAttempt, Tokens, UsageRecord};
pub use request_log::{AttemptOutcome, RequestInfo, RequestLog};
