//! The admin page (`/`): one self-contained HTML file, compiled into the binary, with no
//! external assets (its charts are drawn on a canvas by its own script). It polls this
//! member's `/commands/ensemble`, `cons`, `dump`, `wchp` and `znode` every second, and the
//! peers' `ensemble` where their admin ports are given, and shows the ensemble (members,
//! roles, term, each follower's lag, digests agreeing), request rate and latency charts,
//! sessions, watches per path and a read-only znode browser.

const PAGE: &str = include_str!("page.html");

/// The page, with `peers` (the other members' admin URLs) written into its script.
pub(crate) fn render(peers: &[String]) -> String {
    let list: Vec<serde_json::Value> = peers
        .iter()
        .map(|p| p.trim_end_matches('/').to_string().into())
        .collect();
    // JSON of strings is a valid script literal; every `<` is escaped, so that nothing in
    // it can end the script element or open a comment.
    let literal = serde_json::Value::Array(list)
        .to_string()
        .replace('<', "\\u003c");
    PAGE.replacen("/*PEERS*/[]", &literal, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_written_into_the_script() {
        let page = render(&["http://a:1/".into(), "http://b:2</script>".into()]);
        assert!(page.contains(r#"const PEERS = ["http://a:1","http://b:2\u003c/script>"];"#));
        assert!(!page.contains("/*PEERS*/"));
        assert!(!page.contains("src=\"http"), "no external assets");
    }
}
