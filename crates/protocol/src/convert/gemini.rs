//! Placeholder; filled by the gemini format work.
