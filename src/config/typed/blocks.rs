//! CIDR blocks as written: `10.0.0.0/8`, `2001:db8::/32`, or a bare address for one host;
//! a flag repeats, a file gives a string or an array.

use super::{one_or_more, Cx, Given, Located, Meta, Result, Typed};
use crate::config::parse::quote;
use crate::core::policy::Cidr;

impl Typed for Vec<Cidr> {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let texts = one_or_more(meta, given, "CIDR block")?;
        let name = cx.values.name(meta);
        texts
            .iter()
            .map(|t| {
                t.text.trim().parse::<Cidr>().map_err(|e| {
                    Located::new(
                        t.span.clone(),
                        format!("invalid value '{}' for {name}: {e}", t.text.trim()),
                    )
                })
            })
            .collect()
    }

    fn render(&self, _: &Meta) -> String {
        let items: Vec<String> = self.iter().map(|c| quote(&c.to_string())).collect();
        format!("[{}]", items.join(", "))
    }
}
