//! Usage accounting that needs no database: the records the request path produces
//! (`record`), how keys are named in them (`keys`), what a request costs (`cost`), the
//! in-memory spending ledger the credit check reads (`ledger`) and the time formats of the
//! uni-api statistics endpoints (`time`). Persistence lives in [`crate::store`].

pub mod cost;
pub mod keys;
pub mod ledger;
pub mod record;
pub mod time;

pub use cost::PriceTable;
pub use keys::{generate_api_key, key_id};
pub use ledger::{CostLedger, CreditState, CreditsView, credit_state, window_start};
pub use record::{AttemptRecord, Tokens, UsageRecord};
