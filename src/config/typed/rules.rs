//! Destination rules as written: a CIDR block or a host name pattern, optional ports
//! (`10.0.0.0/8`, `127.0.0.1/32:8080`, `*.example.com:80-91,443`, `[::1]:22`); a flag
//! repeats, a file gives a string or an array.

use super::{one_or_more, Cx, Given, Located, Meta, Result, Typed};
use crate::config::parse::quote;
use crate::core::policy::Rule;

impl Typed for Vec<Rule> {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let texts = one_or_more(meta, given, "rule")?;
        let name = cx.values.name(meta);
        texts
            .iter()
            .map(|t| {
                t.text.trim().parse::<Rule>().map_err(|e| {
                    Located::new(
                        t.span.clone(),
                        format!("invalid value '{}' for {name}: {e}", t.text.trim()),
                    )
                })
            })
            .collect()
    }

    fn render(&self, _: &Meta) -> String {
        let items: Vec<String> = self.iter().map(|r| quote(&r.to_string())).collect();
        format!("[{}]", items.join(", "))
    }
}
