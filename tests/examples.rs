//! The configurations the repository ships stay valid: the top-level
//! `gateway.yaml`, the compose example's, and the `gateway.yaml` of every
//! Kubernetes ConfigMap under `examples/kubernetes/` pass the same checks as
//! `portcullis check`. (The manifests themselves are validated against the
//! Kubernetes and compose schemas by `.ci/run`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use portcullis::config::Config;
use serde::Deserialize;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env(name: &str) -> Option<String> {
    match name {
        "DATABASE_URL" => Some("postgres://portcullis@db.example.test/portcullis".into()),
        _ => None,
    }
}

fn check(text: &str, path: &Path) {
    if let Err(e) = Config::from_yaml_with_env(text, path, &env) {
        panic!("{} is not valid:\n{e}", path.display());
    }
}

#[test]
fn the_shipped_configurations_are_valid() {
    for file in ["gateway.yaml", "examples/compose/gateway.yaml"] {
        let path = root().join(file);
        check(&std::fs::read_to_string(&path).unwrap(), &path);
    }
}

#[derive(Deserialize)]
struct Manifest {
    kind: String,
    #[serde(default)]
    data: std::collections::BTreeMap<String, String>,
}

#[test]
fn every_kubernetes_config_map_holds_a_valid_gateway_yaml() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("examples/kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let m = Manifest::deserialize(doc).unwrap();
            if m.kind != "ConfigMap" {
                continue;
            }
            let gateway = m.data.get("gateway.yaml").expect("a gateway.yaml key");
            check(gateway, &path.join("gateway.yaml"));
            checked += 1;
        }
    }
    assert!(checked >= 2, "the examples lost their ConfigMaps");
}
