//! The upstreams of a forward listener as written:
//! `HOST:PORT[,weight=N][,backup][,proxy=v1|v2]`, each resolved at load (every address
//! it gives), its target kept for look-ups later.

use super::{addresses, one_or_more, Cx, Given, Located, Meta, Result, Text, Typed};
use crate::config::parse::quote;
use crate::config::{ProxyProtocol, Upstream};
use crate::core::upstream::MAX_WEIGHT;

/// One upstream: `HOST:PORT[,weight=N][,backup][,proxy=v1|v2]`, resolved; the target
/// kept as written.
fn upstream(meta: &Meta, name: &str, t: &Text, cx: &mut Cx<'_>) -> Result<Upstream> {
    let mut parts = t.text.split(',');
    let target = parts.next().unwrap_or_default().trim().to_string();
    let addr = Text {
        text: target.clone(),
        span: t.span.clone(),
    };
    let addrs = addresses(meta, name, &addr, cx)?;
    let bad = |why: String| {
        Located::new(
            t.span.clone(),
            format!("invalid value '{}' for {name}: {why}", t.text.trim()),
        )
    };
    let (mut weight, mut backup, mut proxy) = (None, false, None);
    for part in parts.map(str::trim) {
        match part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("proxy", _)) if proxy.is_some() => {
                return Err(bad("proxy is given twice".into()))
            }
            Some(("proxy", v)) => {
                proxy = Some(
                    proxy_protocol(v)
                        .ok_or_else(|| bad(format!("proxy must be v1 or v2, not '{v}'")))?,
                )
            }
            Some(("weight", _)) if weight.is_some() => {
                return Err(bad("weight is given twice".into()))
            }
            Some(("weight", n)) => match n.parse::<u32>() {
                Ok(w) if (1..=MAX_WEIGHT).contains(&w) => weight = Some(w),
                _ => {
                    return Err(bad(format!(
                        "weight must be a whole number from 1 to {MAX_WEIGHT}"
                    )))
                }
            },
            Some(("backup", _)) => {
                return Err(bad("backup takes no value: write ',backup'".into()))
            }
            None if part == "backup" && backup => return Err(bad("backup is given twice".into())),
            None if part == "backup" => backup = true,
            _ if part.is_empty() => {
                return Err(bad(
                    "an empty attribute (two commas, or one at the end)".into()
                ))
            }
            _ => {
                return Err(bad(format!(
                    "unknown attribute '{part}': expected weight=N, backup or proxy=v1|v2"
                )))
            }
        }
    }
    Ok(Upstream {
        target,
        addrs,
        weight: weight.unwrap_or(1),
        backup,
        proxy,
    })
}

/// `v1` or `v2`.
pub(super) fn proxy_protocol(word: &str) -> Option<ProxyProtocol> {
    match word {
        "v1" => Some(ProxyProtocol::V1),
        "v2" => Some(ProxyProtocol::V2),
        _ => None,
    }
}

impl Typed for Vec<Upstream> {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let texts = one_or_more(meta, given, "address")?;
        let name = cx.values.name(meta);
        let mut all = Vec::with_capacity(texts.len());
        for t in texts {
            all.push(upstream(meta, &name, t, cx)?);
        }
        if all.iter().all(|u| u.backup) {
            return Err(Located::new(
                given.span.clone(),
                format!("{name}: every upstream is a backup; at least one must not be"),
            ));
        }
        Ok(all)
    }

    fn render(&self, _: &Meta) -> String {
        let one = |u: &Upstream| {
            let mut s = u.target.clone();
            if u.weight != 1 {
                s.push_str(&format!(",weight={}", u.weight));
            }
            if u.backup {
                s.push_str(",backup");
            }
            if let Some(p) = u.proxy {
                s.push_str(&format!(",proxy={}", p.as_str()));
            }
            quote(&s)
        };
        match self.as_slice() {
            [u] => one(u),
            _ => {
                let items: Vec<String> = self.iter().map(one).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}
