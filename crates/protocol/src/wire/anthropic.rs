//! Placeholder; filled by the anthropic format work.
