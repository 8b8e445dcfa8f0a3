//! `/commands/<name>`: ZooKeeper's AdminServer commands as JSON, as its Jetty AdminServer
//! answers them (each answer an object with `command` and `error`), from the node's
//! [`Monitor::command`](zkraft::Monitor::command); `/commands` lists them.

use zkraft::admin::{Value, COMMANDS};
use zkraft::Monitor;

/// JSON of a command's answer.
pub(crate) fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Str(s) => s.clone().into(),
        Value::List(l) => l.iter().map(to_json).collect(),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// The answer to `/commands/<name>`: the status and the JSON body.
pub(crate) fn run(
    node: &Monitor,
    name: &str,
    args: &[(String, String)],
    ids: &[zkraft::Id],
) -> (u16, String) {
    match node.command_as(name, args, ids) {
        Some(answer) => (200, to_json(&answer).to_string()),
        // As ZooKeeper's AdminServer: an unknown command is a 404 with the same shape.
        None => (
            404,
            serde_json::json!({"command": name, "error": format!("Unknown command: {name}")})
                .to_string(),
        ),
    }
}

/// `/commands`: the commands, each with its other names and its URL.
pub(crate) fn list() -> String {
    let items: Vec<serde_json::Value> = COMMANDS
        .iter()
        .map(|(name, others)| {
            serde_json::json!({
                "name": name,
                "aliases": others,
                "url": format!("/commands/{name}"),
            })
        })
        .collect();
    serde_json::json!({ "commands": items }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_json() {
        let v = Value::Map(vec![
            ("a".into(), Value::List(vec![Value::Int(1), Value::Null])),
            ("b".into(), Value::Float(0.5)),
            ("c".into(), Value::Float(f64::NAN)),
            ("d".into(), Value::Str("x\"y".into())),
            ("e".into(), Value::Bool(true)),
        ]);
        assert_eq!(
            to_json(&v).to_string(),
            r#"{"a":[1,null],"b":0.5,"c":null,"d":"x\"y","e":true}"#
        );
    }
}
