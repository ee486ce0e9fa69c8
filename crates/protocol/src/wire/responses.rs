//! Placeholder; filled by the responses format work.
