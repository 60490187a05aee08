//! The workspace's crates form layers, and nothing points up: a crate may depend only on
//! crates of lower layers (ARCHITECTURE.md, "Layers"). Read from `cargo metadata`, so a new
//! dependency (normal, dev or build) that points up, or a new crate not placed in a layer,
//! fails here.

use std::collections::BTreeMap;
use std::process::Command;

/// Each workspace crate and its layer, bottom first.
const LAYERS: &[(&str, u32)] = &[
    ("zhiku-ingest", 0),
    ("zhiku-ocr", 0),
    ("zhiku-core", 1),
    ("zhiku-llm", 2),
    ("zhiku-server", 3),
    ("zhiku", 4),
];

#[test]
fn no_crate_depends_on_a_layer_above_or_beside_it() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let packages = meta["packages"].as_array().expect("packages");
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for p in packages {
        let name = p["name"].as_str().expect("package name");
        seen.push(name.to_string());
        let Some(&own) = layer.get(name) else {
            wrong.push(format!(
                "{name} is in no layer: add it to LAYERS and ARCHITECTURE.md"
            ));
            continue;
        };
        for d in p["dependencies"].as_array().expect("dependencies") {
            let dep = d["name"].as_str().expect("dependency name");
            if let Some(&theirs) = layer.get(dep)
                && theirs >= own
            {
                let kind = d["kind"].as_str().unwrap_or("normal");
                wrong.push(format!(
                    "{name} (layer {own}) depends on {dep} (layer {theirs}, {kind})"
                ));
            }
        }
    }
    for (name, _) in LAYERS {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} is listed but not in the workspace"
        );
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}
