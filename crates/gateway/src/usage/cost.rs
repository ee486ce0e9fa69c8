//! Request cost from uni-api's `preferences.model_price`: `{model_prefix: "input,output"}`
//! in dollars per million tokens. Lookup: the first entry (file order) whose key is a prefix of
//! the requested model, else the `default` entry, else uni-api's built-in 0.3 / 1.

use crate::config::schema::Price;

use super::record::Tokens;

/// uni-api's price when neither a prefix nor `default` matches (its README says 1,2; the code
/// uses 0.3,1).
pub const FALLBACK_PRICE: Price = Price {
    input_per_million: 0.3,
    output_per_million: 1.0,
};

/// Prices of one configuration, built once per (re)load.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prefixes: Vec<(String, Price)>,
    default: Price,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            prefixes: Vec::new(),
            default: FALLBACK_PRICE,
        }
    }
}

impl PriceTable {
    /// From `GlobalPreferences::model_price` (file order preserved). The `default` entry is only
    /// a fallback, never a prefix: a model named `default-x` is not priced by it first.
    pub fn new(model_price: &[(String, Price)]) -> PriceTable {
        let mut table = PriceTable::default();
        for (prefix, price) in model_price {
            if prefix == "default" {
                table.default = *price;
            } else {
                table.prefixes.push((prefix.clone(), *price));
            }
        }
        table
    }

    pub fn lookup(&self, model: &str) -> Price {
        self.prefixes
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
            .map_or(self.default, |(_, p)| *p)
    }
}

/// `(prompt · input + completion · output) / 1e6` dollars, as uni-api's `compute_total_cost`.
/// Cached and reasoning tokens are part of prompt and completion and priced the same (uni-api
/// has no cache or reasoning price).
pub fn cost(tokens: &Tokens, price: Price) -> f64 {
    // Token counts stay far below 2^53, where u64 -> f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    let (p, c) = (tokens.prompt as f64, tokens.completion as f64);
    (p * price.input_per_million + c * price.output_per_million) / 1_000_000.0
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn price(i: f64, o: f64) -> Price {
        Price {
            input_per_million: i,
            output_per_million: o,
        }
    }

    fn table() -> PriceTable {
        PriceTable::new(&[
            ("gpt-4o-mini".into(), price(0.15, 0.6)),
            ("gpt-4o".into(), price(2.5, 10.0)),
            ("gpt-4".into(), price(30.0, 60.0)),
            ("default".into(), price(1.0, 2.0)),
            ("claude".into(), price(3.0, 15.0)),
        ])
    }

    #[test]
    fn first_prefix_in_file_order_wins() {
        let t = table();
        assert_eq!(t.lookup("gpt-4o-mini-2024-07-18"), price(0.15, 0.6));
        assert_eq!(t.lookup("gpt-4o-2024-08-06"), price(2.5, 10.0));
        assert_eq!(t.lookup("gpt-4-turbo"), price(30.0, 60.0));
        // An entry after `default` still matches: `default` is not a stop marker.
        assert_eq!(t.lookup("claude-sonnet-4"), price(3.0, 15.0));
        // Prefix, not substring.
        assert_eq!(t.lookup("my-gpt-4o"), price(1.0, 2.0));
        assert_eq!(t.lookup("default-model"), price(1.0, 2.0));
    }

    #[test]
    fn earlier_shorter_prefix_shadows_a_later_longer_one() {
        let t = PriceTable::new(&[
            ("gpt".into(), price(1.0, 1.0)),
            ("gpt-4o".into(), price(9.0, 9.0)),
        ]);
        assert_eq!(t.lookup("gpt-4o"), price(1.0, 1.0));
    }

    #[test]
    fn without_default_falls_back_to_uni_api_builtin() {
        let t = PriceTable::new(&[("gpt-4o".into(), price(2.5, 10.0))]);
        assert_eq!(t.lookup("llama-3"), FALLBACK_PRICE);
        assert_eq!(PriceTable::default().lookup("x"), price(0.3, 1.0));
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let tokens = Tokens {
            prompt: 1_000_000,
            completion: 500_000,
            ..Tokens::default()
        };
        assert!((cost(&tokens, price(2.5, 10.0)) - 7.5).abs() < 1e-12);
        let small = Tokens {
            prompt: 1200,
            completion: 300,
            cached: 1000,
            reasoning: 100,
            estimated: false,
        };
        // Cached and reasoning tokens are not priced apart.
        assert!((cost(&small, FALLBACK_PRICE) - (1200.0 * 0.3 + 300.0) / 1e6).abs() < 1e-15);
        assert_eq!(cost(&Tokens::default(), price(5.0, 5.0)), 0.0);
    }
}
